from __future__ import annotations

import pytest

from interp.model.loading import load_model


@pytest.fixture(scope="session")
def planted_model(tmp_path_factory):
    """The attribution-graph tests' 2-layer Phi with one planted feature path (methods.graphs.models)."""
    from methods.graphs.models import save_planted_path_dir

    return load_model(
        save_planted_path_dir(tmp_path_factory.mktemp("planted")), device="cpu", dtype="float32"
    )
