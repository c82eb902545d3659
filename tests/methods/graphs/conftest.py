from __future__ import annotations

import pytest

from interp.model.loading import load_model


@pytest.fixture(scope="session")
def tiny_model(tiny_phi_dir):
    return load_model(tiny_phi_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def planted_model(tmp_path_factory):
    from methods.graphs.models import save_planted_path_dir

    return load_model(
        save_planted_path_dir(tmp_path_factory.mktemp("planted")), device="cpu", dtype="float32"
    )
