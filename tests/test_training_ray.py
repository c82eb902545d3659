"""`interp train --backend ray`: groups of dictionaries on actors give the local run's dictionaries bit
for bit, checkpoints resume across backends in both directions, user errors in an actor are raised as
themselves, and the grouping keeps dictionaries on the same hooks together."""

from __future__ import annotations

import pytest
import torch
from test_backends import THREADS, threads  # noqa: F401  (the driver's thread-count fixture)
from test_training_run import SAE, TRANSCODER, config, config_dict

from interp.base.errors import HookNameError, InputError
from interp.cli import main
from interp.runner import training_run
from interp.runner.training_config import parse_train_config, train_toml
from interp.runner.training_groups import hook_groups
from interp.runner.training_run import run_training

pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'interp[ray]')")

FILES = ("sae_weights.safetensors", "sparsity.safetensors", "cfg.json", "metrics.json")


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    previous = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        out = tmp_path_factory.mktemp("local")
        return out, run_training(config(), out, progress=False)
    finally:
        torch.set_num_threads(previous)


def assert_same_dictionaries(a, b) -> None:
    for name in ("resid1", "mlp1"):
        for file in FILES:
            assert (a / name / file).read_bytes() == (b / name / file).read_bytes(), (name, file)


class TestGrouping:
    def test_dictionaries_on_the_same_hooks_share_a_group(self):
        second_sae = {**SAE, "name": "resid1_wide", "d_sae": 96}
        other = {**SAE, "name": "resid0", "hook": "blocks.0.hook_resid_pre"}
        cfg = parse_train_config(config_dict(dictionary=[SAE, TRANSCODER, second_sae, other]))
        assert hook_groups(cfg, 8) == [[0, 2], [1], [3]]
        assert hook_groups(cfg, 2) == [[0, 2], [1, 3]]
        assert hook_groups(cfg, 1) == [[0, 1, 2, 3]]
        with pytest.raises(InputError, match="at least 1"):
            hook_groups(cfg, 0)

    def test_local_backend_refuses_ray_options_and_unknown_backends(self, tmp_path):
        with pytest.raises(InputError, match="local backend takes no options"):
            run_training(config(), tmp_path / "a", backend_options={"num_workers": 2})
        with pytest.raises(InputError, match="unknown backend 'dask'; allowed: local, ray"):
            run_training(config(), tmp_path / "b", backend="dask")

    def test_cli_refuses_ray_flags_without_the_ray_backend(self, tmp_path, capsys):
        path = tmp_path / "train.toml"
        path.write_text(train_toml(config()))
        assert main(["train", str(path), "--out", str(tmp_path / "out"), "--num-workers", "3"]) == 2
        assert "need --backend ray" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.usefixtures("ray_cluster", "threads")
class TestRayTraining:
    def test_same_dictionaries_as_local(self, local, tmp_path):
        out_local, summary = local
        ray_summary = run_training(
            config(), tmp_path, progress=False, backend="ray", backend_options={"num_workers": 2}
        )
        assert ray_summary == summary
        assert_same_dictionaries(out_local, tmp_path)
        assert "ray: 2 actors" in (tmp_path / "run.log").read_text()

    def test_resume_across_backends_both_ways(self, local, tmp_path, monkeypatch):
        out_local, summary = local
        save = training_run._save_checkpoint
        for first, then in (("local", "ray"), ("ray", "local")):
            out = tmp_path / f"{first}-then-{then}"
            calls = []

            def save_then_stop(*args, calls=calls):
                save(*args)
                calls.append(args[-1].tokens_read)
                if len(calls) == 2:
                    raise KeyboardInterrupt

            monkeypatch.setattr(training_run, "_save_checkpoint", save_then_stop)
            options = {"num_workers": 2} if first == "ray" else None
            with pytest.raises(KeyboardInterrupt):
                run_training(config(), out, progress=False, backend=first, backend_options=options)
            monkeypatch.setattr(training_run, "_save_checkpoint", save)
            options = {"num_workers": 2} if then == "ray" else None
            resumed = run_training(
                config(), out, resume=True, progress=False, backend=then, backend_options=options
            )
            assert f"resuming after {calls[1]} tokens" in (out / "run.log").read_text()
            assert resumed == summary, (first, then)
            assert_same_dictionaries(out_local, out)

    def test_a_user_error_in_an_actor_is_raised_as_itself(self, tmp_path):
        bad = config(sae={"hook": "blocks.1.hook_resid_pree"})
        with pytest.raises(HookNameError, match="hook_resid_pre"):
            run_training(bad, tmp_path, progress=False, backend="ray", backend_options={"num_workers": 2})
