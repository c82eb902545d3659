"""Conformance of the local and Ray backends: same results (bit for bit), resume across backends in both
directions, faults, and the same user errors (exit 2, `error: ...`) whichever backend."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import interrupted_at

import interp.runner.run as experiment
import interp.runner.worker as worker
from interp.cli import main
from interp.runner.config import parse_config, to_toml

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
THREADS = 2  # the driver's torch thread count in these tests; Ray would give each actor 1 (its num_cpus)


@pytest.fixture
def threads():
    """The driver computes with THREADS CPU threads (restored after the test)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield THREADS
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def local_results(tmp_path_factory):
    previous = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return experiment.run_experiment(
            parse_config(CONFIG), tmp_path_factory.mktemp("local"), progress=False
        )
    finally:
        torch.set_num_threads(previous)


def assert_same(a: dict, b: dict) -> None:
    """Identical: the same numbers, not close ones."""
    assert a["baseline"] == b["baseline"]
    for x, y in zip(a["analyses"], b["analyses"], strict=True):
        assert x["name"] == y["name"] and x["dims"] == y["dims"]
        assert x["values"] == y["values"], x["name"]


@pytest.mark.slow
class TestRayBackend:
    def test_same_results_as_local(self, ray_cluster, local_results, threads, tmp_path):
        results = experiment.run_experiment(
            parse_config(CONFIG), tmp_path, progress=False, backend="ray", backend_options={"num_workers": 2}
        )
        assert_same(results, local_results)
        assert json.loads((tmp_path / "run.json").read_text())["torch_threads"] == threads
        assert (tmp_path / "report.html").exists()

    def test_resume_across_backends(self, ray_cluster, local_results, threads, tmp_path, monkeypatch):
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

    def test_a_ray_run_resumed_locally_equals_a_fresh_local_run(
        self, ray_cluster, local_results, threads, tmp_path
    ):
        experiment.run_experiment(parse_config(CONFIG), tmp_path, progress=False, backend="ray")
        units = sorted(tmp_path.glob("units/*/*.safetensors"))
        for unit in units[::2]:  # as if the Ray run had been stopped before these
            unit.unlink()
        (tmp_path / "results.json").unlink()
        torch.set_num_threads(1)  # another shell, another default: the run's own count is used
        results = experiment.run_experiment(parse_config(CONFIG), tmp_path, resume=True, progress=False)
        assert (
            f"resuming: {len(units) - len(units[::2])} of {len(units)}" in (tmp_path / "run.log").read_text()
        )
        assert_same(results, local_results)

    def test_killed_actor_is_replaced_and_the_sweep_completes(self, ray_cluster, threads):
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
                assert torch.equal(results[unit].values, local.compute(*unit).values)
        finally:
            executor.close()

    @pytest.mark.parametrize(
        ("analysis", "message"),
        [  # found while the actors load (the heads) and inside a unit (the prompt lengths)
            ({"kind": "path_patch", "senders": [[9, 0]]}, "senders [[9, 0]] are not heads of this model"),
            ({"kind": "patch_resid_pre"}, "needs every prompt to have the same token length"),
        ],
    )
    def test_a_user_error_in_a_worker_is_the_local_backends_error(
        self, ray_cluster, tmp_path, capsys, analysis, message
    ):
        """Every user error is exit 2 with `error: ...` naming what is wrong, whichever backend."""
        config = tmp_path / "c.toml"
        config.write_text(to_toml(parse_config(dict(CONFIG, analysis=[analysis]))))
        errors = []
        for backend in ("local", "ray"):
            assert (
                main(["run", str(config), "--out", str(tmp_path / backend), "--backend", backend, "--quiet"])
                == 2
            )
            err = capsys.readouterr().err
            assert message in err and "Traceback" not in err and "internal error" not in err
            errors.append([line for line in err.splitlines() if line.startswith("error:")])
        assert errors[0] == errors[1]

    def test_an_internal_error_in_a_worker_keeps_its_traceback(self, ray_cluster):
        from interp.runner.backends.ray_backend import RayExecutor

        def broken(actor):
            raise ZeroDivisionError("a bug inside the worker")

        executor = RayExecutor(parse_config(CONFIG), num_workers=1)
        try:
            with pytest.raises(ZeroDivisionError, match="a bug inside the worker") as info:
                executor.get(executor.actors[0].__ray_call__.remote(broken))
            assert isinstance(info.value, ray.exceptions.RayTaskError)
            assert "in broken" in str(info.value)  # the worker's frames travel with an internal error
        finally:
            executor.close()


def test_unknown_backend_and_bad_options(tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'slurm'"):
        experiment.run_experiment(parse_config(CONFIG), tmp_path / "a", backend="slurm")
    with pytest.raises(ValueError, match="takes no options"):
        experiment.run_experiment(parse_config(CONFIG), tmp_path / "b", backend_options={"num_workers": 2})
