"""The experiment runner: results schema, strict JSON, resume after a kill, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import interrupted_at

import interp.runner.run as experiment
import interp.runner.worker as worker
from interp.base.errors import RunDirectoryError
from interp.cli import main
from interp.runner.config import load_config, parse_config
from interp.runner.registry import Computed

ROOT = Path(__file__).resolve().parents[1]
SMALL = {
    "seed": 3,
    "batch_size": 4,
    "task": {"name": "ioi", "n_pairs": 8},
    "analysis": [
        {"kind": "patch_head_out"},
        {"kind": "ablate_head", "method": "zero"},
        {"kind": "logit_lens"},
        {"kind": "head_scores", "score": "previous_token"},
    ],
}


def values(results: dict) -> dict:
    return {a["name"]: a["values"] for a in results["analyses"]}


def test_results_schema_and_files(tmp_path):
    results = experiment.run_experiment(parse_config(SMALL), tmp_path, progress=False)
    on_disk = json.loads((tmp_path / "results.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert on_disk == results
    assert set(results) >= {"interp_version", "model", "task", "baseline", "analyses"}
    assert set(results["model"]) >= {"source", "n_layers", "n_heads", "d_model", "dtype", "device", "weights"}
    assert results["task"]["name"] == "ioi" and results["task"]["n_pairs"] == 8
    assert results["baseline"]["clean"] > 0 > results["baseline"]["corrupted"]
    patch = results["analyses"][0]
    assert patch["kind"] == "patch_head_out" and patch["dims"] == ["layer", "head"]
    assert len(patch["values"]) == 4 and len(patch["values"][0]) == 4 and "normalised" in patch["description"]
    from safetensors.torch import load_file

    tensors = load_file(tmp_path / "tensors.safetensors")
    assert tensors["patch_head_out.per_prompt"].shape == (4, 4, 8)
    assert (tmp_path / "report.html").stat().st_size > 100_000
    assert (tmp_path / "config.resolved.toml").read_text().startswith("# config hash: ")
    assert "finished" in (tmp_path / "run.log").read_text()


def test_existing_run_needs_resume_and_the_same_config(tmp_path):
    experiment.run_experiment(parse_config(SMALL), tmp_path, progress=False)
    with pytest.raises(RunDirectoryError, match="already holds a run.*--resume"):
        experiment.run_experiment(parse_config(SMALL), tmp_path, progress=False)
    changed = parse_config({**SMALL, "seed": 4})
    with pytest.raises(RunDirectoryError, match="another config.*different: seed"):
        experiment.run_experiment(changed, tmp_path, resume=True, progress=False)


def test_non_finite_values_name_the_analysis(tmp_path, monkeypatch):
    real = worker.compute_unit

    def broken(analysis, model, pairs, config):
        out = real(analysis, model, pairs, config)
        return (
            Computed(out.dims, out.values * float("nan"), out.labels)
            if analysis.kind == "logit_lens"
            else out
        )

    monkeypatch.setattr(worker, "compute_unit", broken)
    with pytest.raises(ValueError, match="analysis 'logit_lens' produced non-finite values"):
        experiment.run_experiment(parse_config(SMALL), tmp_path, progress=False)


def test_interrupted_run_resumes_to_identical_results(tmp_path, monkeypatch):
    expected = experiment.run_experiment(parse_config(SMALL), tmp_path / "whole", progress=False)
    real = worker.compute_unit
    monkeypatch.setattr(worker, "compute_unit", interrupted_at(4, real))
    with pytest.raises(KeyboardInterrupt):
        experiment.run_experiment(parse_config(SMALL), tmp_path / "cut", progress=False)
    done = list((tmp_path / "cut" / "units").rglob("*.safetensors"))
    assert 0 < len(done) < 11 and not (tmp_path / "cut" / "results.json").exists()
    monkeypatch.setattr(worker, "compute_unit", real)
    resumed = experiment.run_experiment(parse_config(SMALL), tmp_path / "cut", resume=True, progress=False)
    assert values(resumed) == values(expected) and resumed["baseline"] == expected["baseline"]


def test_a_resumed_run_computes_with_the_thread_count_it_began_with(tmp_path, monkeypatch):
    """Float sums depend on how work is split over CPU threads: a run records its thread count and a
    resume (with another count in effect, as on a Ray actor or another shell) computes with it."""
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        expected = experiment.run_experiment(parse_config(SMALL), tmp_path / "whole", progress=False)
        real = worker.compute_unit
        monkeypatch.setattr(worker, "compute_unit", interrupted_at(4, real))
        with pytest.raises(KeyboardInterrupt):
            experiment.run_experiment(parse_config(SMALL), tmp_path / "cut", progress=False)
        monkeypatch.setattr(worker, "compute_unit", real)
        torch.set_num_threads(1)
        resumed = experiment.run_experiment(
            parse_config(SMALL), tmp_path / "cut", resume=True, progress=False
        )
        assert values(resumed) == values(expected) and resumed["baseline"] == expected["baseline"]
        assert json.loads((tmp_path / "cut" / "run.json").read_text())["torch_threads"] == 2
        assert torch.get_num_threads() == 1  # the run's count was set while it ran, then restored
    finally:
        torch.set_num_threads(previous)


SIGTERM_AT_UNIT = """
import os, signal, sys
import interp.runner.worker as worker
from interp.cli import main
real, calls = worker.compute_unit, [0]
def compute(*args, **kwargs):
    calls[0] += 1
    if calls[0] == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to this thread before the next line runs
    return real(*args, **kwargs)
worker.compute_unit = compute
sys.exit(main(sys.argv[2:]))
"""


def test_sigterm_is_logged_like_ctrl_c_and_the_run_resumes(tmp_path):
    """A stop is logged whatever stopped the run: SIGTERM leaves its line in run.log as Ctrl-C does."""
    from interp.runner.config import to_toml

    path = tmp_path / "c.toml"
    path.write_text(to_toml(parse_config(SMALL)))
    out = tmp_path / "cut"
    args = ["run", str(path), "--out", str(out), "--quiet"]
    stopped = subprocess.run(
        [sys.executable, "-c", SIGTERM_AT_UNIT, "4", *args], capture_output=True, text=True
    )
    assert stopped.returncode == 130, stopped.stderr  # as Ctrl-C: "rerun with --resume"
    log = (out / "run.log").read_text()
    assert "stopped: terminated by SIGTERM; finished units are kept" in log
    assert 0 < len(list(out.glob("units/*/*.safetensors"))) < 11 and not (out / "results.json").exists()
    assert main([*args, "--resume"]) == 0
    expected = experiment.run_experiment(parse_config(SMALL), tmp_path / "whole", progress=False)
    assert values(json.loads((out / "results.json").read_text())) == values(expected)


def test_sigterm_handling_is_limited_to_the_run(tmp_path, monkeypatch):
    """Outside a run SIGTERM keeps its previous handler; a handler someone else set is left alone."""
    before = signal.getsignal(signal.SIGTERM)
    experiment.run_experiment(
        parse_config(dict(SMALL, analysis=[{"kind": "logit_lens"}])), tmp_path / "a", progress=False
    )
    assert signal.getsignal(signal.SIGTERM) is before
    seen = []
    monkeypatch.setattr(experiment, "plan_units", lambda *a: (os.kill(os.getpid(), signal.SIGTERM), seen)[1])
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with pytest.raises(AttributeError):  # the stand-in plan is no plan; the point is the handler ran
            experiment.run_experiment(parse_config(SMALL), tmp_path / "b", progress=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [signal.SIGTERM]


@pytest.mark.slow
def test_killed_process_resumes_to_identical_results(tmp_path):
    config = dict(SMALL, batch_size=1, analysis=[{"kind": "patch_head_out"}, {"kind": "ablate_head"}])
    path = tmp_path / "c.toml"
    from interp.runner.config import to_toml

    path.write_text(to_toml(parse_config(config)))
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "interp", "run", str(path), "--out", str(out), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # wait (without a time limit that a loaded machine could miss) until 6 units are on disk or the
    # process ends by itself; the process is killed in the middle of its work either way
    while process.poll() is None and len(list(out.glob("units/*/*.safetensors"))) < 6:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(list(out.glob("units/*/*.safetensors")))
    assert finished >= 6 and not (out / "results.json").exists(), "the run finished before it could be killed"
    assert main(["run", str(path), "--out", str(out), "--resume", "--quiet"]) == 0
    assert not list(out.glob("units/*/.*.tmp"))  # no half-written unit survived
    expected = experiment.run_experiment(load_config(path), tmp_path / "whole", progress=False)
    assert values(json.loads((out / "results.json").read_text())) == values(expected)


TOY_SKIPS: dict[str, str] = {}  # experiment file -> why it cannot run on the toy model


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(p.name, marks=pytest.mark.skip(reason=TOY_SKIPS[p.name]))
        if p.name in TOY_SKIPS
        else p.name
        for p in sorted((ROOT / "experiments").glob("*.toml"))
        if "[[dictionary]]"
        not in p.read_text(encoding="utf-8")  # `interp train` configs: test_toy_dictionaries
    ],
)
def test_every_shipped_experiment_runs_on_the_toy_model(name, tmp_path):
    assert (
        main(["run", str(ROOT / "experiments" / name), "--model", "toy", "--out", str(tmp_path), "--quiet"])
        == 0
    )  # how long each takes is recorded by benchmarks, never asserted here
    results = json.loads((tmp_path / "results.json").read_text())
    assert all(torch.isfinite(torch.tensor(a["values"])).all() for a in results["analyses"])


def test_cli_errors_are_clean(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[analysis]]\nkind = "patch_everything"\n')
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "analysis.0.kind" in capsys.readouterr().err


def test_cuda_out_of_memory_halves_the_batch_and_gives_the_same_results(tmp_path, monkeypatch, capsys):
    expected = experiment.run_experiment(parse_config(SMALL), tmp_path / "whole", progress=False)
    real = worker.compute_unit

    def small_memory(analysis, model, pairs, config):
        if len(pairs) > 1 and analysis.kind == "patch_head_out":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(analysis, model, pairs, config)

    monkeypatch.setattr(worker, "compute_unit", small_memory)
    results = experiment.run_experiment(parse_config(SMALL), tmp_path / "halved", progress=False)
    assert "retrying as 2 + 2" in capsys.readouterr().err
    assert "CUDA out of memory" in (tmp_path / "halved" / "run.log").read_text()
    got, want = values(results)["patch_head_out"], values(expected)["patch_head_out"]
    assert torch.allclose(torch.tensor(got), torch.tensor(want), atol=1e-5)


def test_edge_analyses_in_results(tmp_path):
    config = {**SMALL, "analysis": [{"kind": "eap"}, {"kind": "circuit_faithfulness", "edge_method": "eap"}]}
    results = experiment.run_experiment(parse_config(config), tmp_path, progress=False)
    eap, faithfulness = results["analyses"]
    assert eap["dims"] == ["edge"] and len(eap["edges"]) == len(eap["values"]) == 463
    assert eap["edges"][0] == "input->a0.h0<q>" and eap["options"]["direction"] == "noising"
    assert faithfulness["dims"] == ["ranking", "fraction"] and len(faithfulness["fractions"]) == 10
    assert faithfulness["values"][0][-1] == pytest.approx(1.0, abs=1e-4)  # 100% of edges: the full model
    assert 0 <= faithfulness["cmd"] and faithfulness["cpr"] <= 1.1


def test_steer_and_generate_write_samples_that_survive_a_resume(tmp_path):
    config = parse_config(
        {
            "seed": 0,
            "task": {"name": "ioi", "n_pairs": 4},
            "analysis": [
                {
                    "kind": "steer",
                    "layers": [2, 4],
                    "multipliers": [0.0, 1.0],
                    "n_samples": 1,
                    "max_new_tokens": 3,
                },
                {"kind": "generate", "heads": [[3, 2]], "n_samples": 2, "max_new_tokens": 3},
            ],
        }
    )
    results = experiment.run_experiment(config, tmp_path, progress=False)
    steer, generated = results["analyses"]
    assert steer["dims"] == ["layer", "multiplier"] and steer["labels"]["layer"] == ["L2", "L4"]
    assert steer["values"][0][0] == pytest.approx(
        results["baseline"]["corrupted"], abs=1e-4
    )  # x0 = unsteered
    assert {"prompt", "layer", "multiplier", "text"} <= set(steer["samples"][0])
    assert {s["layer"] for s in steer["samples"]} == {None, 2, 4}
    assert len(generated["samples"]) == 4 and generated["dims"] == ["sample"]
    report = (tmp_path / "report.html").read_text()
    assert "steer: generated text" in report and "generate: generated text" in report
    # the samples come back from the stored units, not from recomputing
    again = experiment.run_experiment(config, tmp_path, resume=True, progress=False)
    assert again["analyses"][0]["samples"] == steer["samples"]


def test_steer_from_explicit_prompts_in_a_config(tmp_path, toy_model):
    from interp.data.tasks import build_pairs
    from interp.methods.steering import steer_sweep

    analysis = {"kind": "steer", "layers": [1, 3], "multipliers": [1.0, 3.0], "n_samples": 0,
                "positive": ["Mary and John. John gave it to"], "negative": ["Mary and John. Mary gave it to"]}  # fmt: skip
    config = parse_config({"seed": 0, "task": {"name": "ioi", "n_pairs": 4}, "analysis": [analysis]})
    result = experiment.run_experiment(config, tmp_path, progress=False)["analyses"][0]
    pairs = build_pairs(config.task, toy_model, seed=0)
    direct = steer_sweep(toy_model, pairs, [1, 3], [1.0, 3.0], n_samples=0,
                         positive=analysis["positive"], negative=analysis["negative"])  # fmt: skip
    assert torch.allclose(torch.tensor(result["values"]), direct.scores, atol=1e-4)
    assert "positive - negative prompts' (1 / 1)" in result["description"]
    with pytest.raises(Exception, match="both positive and negative"):
        parse_config({"task": {"name": "ioi"}, "analysis": [{"kind": "steer", "positive": ["a b"]}]})
    with pytest.raises(Exception, match="does not read layers, multipliers, negative, positive"):
        parse_config({"task": {"name": "ioi"}, "analysis": [{**analysis, "kind": "generate", "layers": None,
                                                              "multipliers": [0.5, 1.0, 2.0, 4.0]}]})  # fmt: skip


def test_generate_with_heads_from_the_corrupted_prompt_matches_patching_each_prompt_alone(
    tmp_path, toy_model
):
    from interp.data.tasks import build_pairs
    from interp.methods.generation import generate
    from interp.methods.interventions import Patch

    analysis = {"kind": "generate", "heads": [[3, 2], [2, 1]], "head_source": "corrupted", "n_samples": 3}
    config = parse_config({"seed": 0, "task": {"name": "ioi", "n_pairs": 6}, "analysis": [analysis]})
    samples = experiment.run_experiment(config, tmp_path, progress=False)["analyses"][0]["samples"]
    patched = [s for s in samples if s["layer"] is not None]
    assert patched[0]["layer"] == "heads L3H2, L2H1 from the corrupted prompt"
    pairs = build_pairs(config.task, toy_model, seed=0)
    for i, sample in enumerate(patched):
        n = int(pairs.lengths[i])
        _, cache = toy_model.run_with_cache(pairs.corrupted_tokens[i : i + 1, :n])
        alone = generate(toy_model, pairs.clean_tokens[i, :n], 12, interventions=[
            Patch("blocks.3.attn.hook_z", cache["blocks.3.attn.hook_z"], "prompt", heads=[2]),
            Patch("blocks.2.attn.hook_z", cache["blocks.2.attn.hook_z"], "prompt", heads=[1]),
        ])  # fmt: skip
        assert sample["text"] == alone.texts[0]
    assert any(p["text"] != s["text"] for p, s in zip(patched, samples, strict=False))  # it changes text
    with pytest.raises(Exception, match="corrupted counterpart"):
        parse_config({"task": {"name": "ioi"}, "analysis": [{**analysis, "positions": "generated"}]})
