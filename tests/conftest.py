from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from helpers import save_phi_dir  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_phi_dir(tmp_path_factory) -> Path:
    return save_phi_dir(tmp_path_factory.mktemp("tiny_phi"))


@pytest.fixture(scope="session")
def toy_model():
    from interp.model.loading import load_model

    return load_model("toy")


@pytest.fixture(scope="session")
def gpt2_bpe_dir() -> Path:
    path = SHARED / "data" / "gpt2-bpe"
    if not path.is_dir():
        pytest.skip("needs ../shared/data/gpt2-bpe (the GPT-2 vocabulary), present in CI only")
    return path
