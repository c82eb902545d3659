from __future__ import annotations

import pytest

from interp.model.loading import load_model
from methods.representations.planted import save_planted, save_planted_units


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    directory = tmp_path_factory.mktemp("planted")
    r = save_planted(directory)
    return load_model(directory, device="cpu"), r


@pytest.fixture(scope="module")
def planted_units(tmp_path_factory):
    directory = tmp_path_factory.mktemp("planted_units")
    r = save_planted_units(directory)
    return load_model(directory, device="cpu"), r
