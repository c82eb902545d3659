"""Conformance of the local and Ray backends: same results, resume across backends, faults, errors."""

from __future__ import annotations

import pytest
import torch
from helpers import interrupted_at

import interp.runner.run as experiment
import interp.runner.worker as worker
from interp.runner.config import parse_config

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'interp[ray]')")

CONFIG = {
    "seed": 1,
    "batch_size": 2,
    "task": {"name": "ioi", "n_pairs": 6},
    "analysis": [
        {"kind": "patch_head_out"},
        {"kind": "ablate_head", "method": "mean"},
        {"kind": "logit_lens"},
    ],
}


@pytest.fixture(scope="module")
def ray_cluster():
    # Ray runs its workers at niceness 15: on a machine that other jobs keep busy they would get almost
    # no CPU and these tests would crawl. Same priority as the test process instead.
    import os

    previous = os.environ.get("RAY_worker_niceness")
    os.environ["RAY_worker_niceness"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    if previous is None:
        os.environ.pop("RAY_worker_niceness", None)
    else:
        os.environ["RAY_worker_niceness"] = previous


@pytest.fixture(scope="module")
def local_results(tmp_path_factory):
    return experiment.run_experiment(parse_config(CONFIG), tmp_path_factory.mktemp("local"), progress=False)


def assert_same(a: dict, b: dict) -> None:
    assert a["baseline"]["clean"] == pytest.approx(b["baseline"]["clean"], abs=1e-5)
    for x, y in zip(a["analyses"], b["analyses"], strict=True):
        assert x["name"] == y["name"] and x["dims"] == y["dims"]
        assert torch.allclose(torch.tensor(x["values"]), torch.tensor(y["values"]), atol=1e-5), x["name"]


@pytest.mark.slow
class TestRayBackend:
    def test_same_results_as_local(self, ray_cluster, local_results, tmp_path):
        results = experiment.run_experiment(
            parse_config(CONFIG), tmp_path, progress=False, backend="ray", backend_options={"num_workers": 2}
        )
        assert_same(results, local_results)
        assert (tmp_path / "report.html").exists()

    def test_resume_across_backends(self, ray_cluster, local_results, tmp_path, monkeypatch):
        real = worker.compute_unit
        monkeypatch.setattr(worker, "compute_unit", interrupted_at(3, real))
        with pytest.raises(KeyboardInterrupt):
            experiment.run_experiment(parse_config(CONFIG), tmp_path, progress=False)  # local, cut short
        monkeypatch.setattr(worker, "compute_unit", real)
        done_locally = len(list(tmp_path.glob("units/*/*.safetensors")))
        results = experiment.run_experiment(
            parse_config(CONFIG), tmp_path, resume=True, progress=False, backend="ray", backend_options={}
        )
        assert done_locally > 0 and "resuming" in (tmp_path / "run.log").read_text()
        assert_same(results, local_results)

    def test_killed_actor_is_replaced_and_the_sweep_completes(self, ray_cluster, local_results):
        from interp.runner.backends.ray_backend import RayExecutor
        from interp.runner.worker import plan_units

        config = parse_config(CONFIG)
        executor = RayExecutor(config, num_workers=2)
        try:
            units = plan_units(config, executor.n_pairs()).units
            results = {}
            stream = executor.map(units)
            for _ in range(2):
                unit, computed = next(stream)
                results[unit] = computed
            ray.kill(executor.actors[0], no_restart=False)  # dies with units in flight; Ray restarts it
            for unit, computed in stream:
                results[unit] = computed
            assert set(results) == set(units)
            local = worker.UnitWorker(config)
            for unit in [("patch_head_out", 0), ("ablate_head", 2), ("logit_lens", 1)]:
                assert torch.allclose(results[unit].values, local.compute(*unit).values, atol=1e-5)
        finally:
            executor.close()

    def test_a_worker_error_surfaces_with_its_traceback(self, ray_cluster, tmp_path):
        bad = dict(CONFIG, analysis=[{"kind": "patch_resid_pre"}])  # ioi prompts of several lengths
        with pytest.raises(Exception, match="same token length") as info:
            experiment.run_experiment(parse_config(bad), tmp_path, progress=False, backend="ray")
        assert "patching.py" in str(info.value)  # the worker-side traceback travels with the error


def test_unknown_backend_and_bad_options(tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'slurm'"):
        experiment.run_experiment(parse_config(CONFIG), tmp_path / "a", backend="slurm")
    with pytest.raises(ValueError, match="takes no options"):
        experiment.run_experiment(parse_config(CONFIG), tmp_path / "b", backend_options={"num_workers": 2})
