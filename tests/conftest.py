from __future__ import annotations

import os
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


# Ray's start-up limits are made for idle machines: on a loaded one its processes can take minutes to
# register. These settings are read by the processes ray.init starts.
RAY_ENV = {
    "RAY_worker_niceness": "0",  # Ray's default 15 starves the actors while other jobs keep the CPU busy
    "RAY_worker_register_timeout_seconds": "600",
    "RAY_gcs_server_request_timeout_seconds": "600",
    "RAY_agent_register_timeout_ms": "600000",
    "RAY_enable_worker_prestart": "0",  # no idle workers started with the node: fewer processes at start
    "RAY_prestart_worker_first_driver": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray instance for the whole session, with two CPUs and no dashboard. If Ray itself cannot
    start here (its node start-up has a fixed 30 s limit that a loaded machine can miss, twice), the Ray
    tests are skipped with Ray's reason: that is the environment, not interp."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'interp[ray]')")
    previous = {key: os.environ.get(key) for key in RAY_ENV}
    os.environ.update(RAY_ENV)
    failures = []
    for _ in range(2):
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
            break
        except Exception as error:  # Ray raises a bare Exception when its node does not come up
            failures.append(f"{type(error).__name__}: {error}")
            ray.shutdown()
    else:
        _restore(previous)
        pytest.skip(f"Ray cannot start a local instance on this machine: {failures[-1]}")
    yield
    ray.shutdown()
    _restore(previous)


def _restore(previous: dict) -> None:
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
