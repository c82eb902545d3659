"""The `dictionary_eval` kind: what it computes is `evaluate_on_model` on the prompts or the corpus; paths
are relative to the config; dictionaries the model cannot take are refused before any unit; the report
shows the section."""

from __future__ import annotations

import json

import pytest
import torch
from dictionary_files import saved
from helpers import ioi_pairs

from interp.dictionaries import evaluate_on_model, load_dictionary
from interp.methods.features.evaluation import prompt_tokens
from interp.runner.config import ConfigError, load_config, parse_config
from interp.runner.kinds import spec_for
from interp.runner.kinds.dictionaries import METRICS
from interp.runner.registry import UnitContext
from interp.runner.worker import check_before_compute

CTX = UnitContext(metric="logit_diff", seed=0, memory_budget=2**30)


def options(**fields):
    return parse_config({"analysis": [{"kind": "dictionary_eval", **fields}]}).analysis[0]


def expected_rows(model, paths, tokens, mask=None, **kwargs):
    rows = []
    for path in paths:
        batches = [(tokens, torch.ones_like(tokens, dtype=torch.bool) if mask is None else mask)]
        m = evaluate_on_model(model, load_dictionary(path), batches, **kwargs)
        rows.append([float(getattr(m, name)) for name in METRICS])
    return torch.tensor(rows, dtype=torch.float64)


def test_on_the_prompts_it_is_evaluate_on_model(toy_model):
    pairs = ioi_pairs(toy_model.tokenizer, 6)
    paths = [str(saved()["sae"]), str(saved()["transcoder"])]
    computed = spec_for("dictionary_eval").compute(options(dictionaries=paths), toy_model, pairs, CTX)
    tokens, mask = prompt_tokens(pairs)
    assert mask.sum() == 2 * pairs.lengths.sum()
    torch.testing.assert_close(
        computed.values, expected_rows(toy_model, paths, tokens, mask), rtol=1e-5, atol=1e-7
    )
    assert computed.labels["metric"] == list(METRICS) and len(computed.labels["dictionary"]) == 2
    about = computed.extra["dictionary_metrics"]
    assert (
        about[1]["dictionary_kind"] == "transcoder" and about[1]["hook_name_out"] == "blocks.1.hook_mlp_out"
    )
    assert about[0]["n_tokens"] == int(mask.sum()) and sum(about[0]["histogram_counts"]) == 64


def test_on_a_corpus_relative_to_the_config(toy_model, tmp_path):
    folder = saved()["sae"].parent
    config = folder / "eval.toml"
    config.write_text(
        '[[analysis]]\nkind = "dictionary_eval"\ndictionaries = ["sae"]\nfiles = ["corpus.txt"]\n'
        "context_length = 8\nmax_tokens = 40\nmodel_batch = 2\nbins = 5\n",
        encoding="utf-8",
    )
    analysis = load_config(config).analysis[0]
    assert analysis.dictionaries == [str(saved()["sae"])] and analysis.files == [str(saved()["corpus"])]
    pairs = ioi_pairs(toy_model.tokenizer, 2)
    computed = spec_for("dictionary_eval").compute(analysis, toy_model, pairs, CTX)
    # independent reading: the file's lines, each tokenised and followed by end-of-text, packed in rows of 8
    tokenizer = toy_model.tokenizer
    ids = []
    for line in saved()["corpus"].read_text(encoding="utf-8").splitlines():
        ids += tokenizer(line)["input_ids"] + [tokenizer.eos_token_id]
    tokens = torch.tensor(ids[:40]).reshape(5, 8)
    expected = expected_rows(toy_model, [saved()["sae"]], tokens, bins=5)
    torch.testing.assert_close(computed.values, expected, rtol=1e-5, atol=1e-7)
    assert len(computed.extra["dictionary_metrics"][0]["histogram_counts"]) == 5


class TestRefusals:
    def test_at_parse_time(self, tmp_path):
        with pytest.raises(ConfigError, match="is not a directory"):
            options(dictionaries=[str(tmp_path / "missing")])
        with pytest.raises(ConfigError, match="at least 1 item"):
            options(dictionaries=[])
        with pytest.raises(ConfigError, match="does not read corpus_file"):
            options(dictionaries=[str(saved()["sae"])], corpus_file=str(tmp_path))
        with pytest.raises(ConfigError, match="context_length applies to a corpus / files source"):
            options(dictionaries=[str(saved()["sae"])], context_length=8)

    def test_before_any_unit_against_the_model(self, toy_model, tmp_path):
        pairs = ioi_pairs(toy_model.tokenizer, 2)
        config = parse_config(
            {
                "analysis": [
                    {"kind": "dictionary_eval", "dictionaries": [str(saved()["sae"]), str(saved()["wide"])]}
                ]
            }
        )
        with pytest.raises(ConfigError, match=r"dictionaries\[1\] .*wide.*d_in=100.*160 wide"):
            check_before_compute(config, toy_model, pairs)
        cfg = json.loads((saved()["sae"] / "cfg.json").read_text())
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        for name in ("sae_weights.safetensors",):
            (elsewhere / name).write_bytes((saved()["sae"] / name).read_bytes())
        cfg["metadata"] = {**cfg.get("metadata", {}), "hook_name": "blocks.7.hook_resid_pre"}
        cfg.pop("hook_name", None)
        (elsewhere / "cfg.json").write_text(json.dumps(cfg))
        config = parse_config({"analysis": [{"kind": "dictionary_eval", "dictionaries": [str(elsewhere)]}]})
        with pytest.raises(ConfigError, match=r"dictionaries\[0\].*layers 0\.\.3"):
            check_before_compute(config, toy_model, pairs)
        not_one = tmp_path / "empty"
        not_one.mkdir()
        config = parse_config({"analysis": [{"kind": "dictionary_eval", "dictionaries": [str(not_one)]}]})
        with pytest.raises(ConfigError, match=r"dictionaries\[0\]"):
            check_before_compute(config, toy_model, pairs)


def test_a_run_reports_the_section(tmp_path):
    from interp.runner.run import run_experiment

    table = {
        "task": {"name": "ioi", "n_pairs": 4},
        "analysis": [
            {"kind": "dictionary_eval", "dictionaries": [str(saved()["sae"]), str(saved()["transcoder"])]}
        ],
    }
    results = run_experiment(parse_config(table), tmp_path / "run", progress=False)
    entry = results["analyses"][0]
    assert entry["dims"] == ["dictionary", "metric"] and len(entry["values"]) == 2
    from interp.report.run_report import build_report

    report = build_report(results)
    section = next(s for s in report.sections if s.title.startswith("dictionary_eval"))
    assert [row[0] for row in section.table_rows] == entry["labels"]["dictionary"]
    recovered = entry["labels"]["metric"].index("ce_loss_recovered")
    assert section.table_rows[0][3 + 3] == f"{entry['values'][0][recovered]:.3f}"
    bars, histograms = section.figures
    assert list(bars.data[0].y) == pytest.approx([row[recovered] for row in entry["values"]])
    assert list(histograms.data[1].y) == entry["dictionary_metrics"][1]["histogram_counts"]
    html = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "CE loss recovered" in html and entry["labels"]["dictionary"][1] in html


def test_interp_tasks_lists_the_required_option(capsys):
    from interp.cli import main

    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    section = out[out.index("  dictionary_eval:") :]
    assert "dictionaries (required)" in section.split("\n  feature_attribution:")[0]
