"""The `feature_circuit` analysis kind: a config with dictionary directories runs end to end, its
results equal the Python API's, and the report draws the curve and the edges."""

from __future__ import annotations

import json

import pytest
import torch

import interp.runner.run as experiment
from interp.base.errors import InputError
from interp.data.tasks import build_pairs
from interp.dictionaries import load_dictionary, make_dictionary, save_dictionary
from interp.methods.features.circuit_evaluation import feature_faithfulness
from interp.methods.features.circuits import feature_circuit
from interp.runner.config import parse_config


def config(dictionaries, **options) -> dict:
    table = {"kind": "feature_circuit", "name": "fc", "dictionaries": dictionaries, **options}
    return {"seed": 1, "task": {"name": "ioi", "n_pairs": 2}, "analysis": [table]}


def test_a_run_writes_the_circuit_its_curve_and_its_report(tmp_path, toy_model):
    paths = []
    for layer in (1, 3):
        sae = make_dictionary(
            "relu", d_in=160, d_sae=24, hook_name=f"blocks.{layer}.hook_resid_pre", seed=layer
        )
        with torch.no_grad():
            sae.b_enc.fill_(0.2)
        paths.append(str(save_dictionary(sae, tmp_path / f"sae{layer}")))
    cfg = parse_config(config(paths, method="eap", top_k=4, sizes=[0, 4, 49]))
    results = experiment.run_experiment(cfg, tmp_path / "run", progress=False)
    entry = results["analyses"][0]
    assert entry["kind"] == "feature_circuit" and entry["dims"] == ["feature"]
    pairs = build_pairs(cfg.task, toy_model, cfg.seed)
    dicts = [load_dictionary(p) for p in paths]
    direct = feature_circuit(toy_model, dicts, pairs, method="eap", top_k=4)
    assert entry["labels"]["feature"] == [direct.labels[i] for i in direct.kept]
    torch.testing.assert_close(
        torch.tensor(entry["values"]), direct.node_scores[direct.kept], rtol=1e-5, atol=1e-7
    )
    assert entry["circuit"] == json.loads(json.dumps(direct.to_json()))
    curve = feature_faithfulness(toy_model, dicts, pairs, direct, [0, 4, 49])
    assert entry["curve"]["faithfulness"] == pytest.approx(curve.faithfulness, rel=1e-4, abs=1e-6)
    # every node kept: the model itself
    assert curve.faithfulness[-1] == pytest.approx(1.0, abs=1e-4) and curve.completeness[-1] == pytest.approx(
        0.0, abs=1e-4
    )
    report = (tmp_path / "run" / "report.html").read_text()
    assert "fc: faithfulness and completeness" in report and "fc: strongest edges" in report


def test_skip_transcoders_are_refused_before_any_unit_runs(tmp_path, toy_model):
    from interp.runner.registry import spec_for

    skip = make_dictionary(
        "relu", d_in=160, d_sae=8, kind="skip_transcoder",
        hook_name="blocks.1.ln1.hook_normalized", hook_name_out="blocks.1.hook_mlp_out",
    )  # fmt: skip
    path = str(save_dictionary(skip, tmp_path / "skip"))
    options = parse_config(config([path])).analysis[0]
    with pytest.raises(InputError, match="skip transcoder"):
        spec_for("feature_circuit").check(options, toy_model)
