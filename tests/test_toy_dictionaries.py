"""The dictionaries shipped with the toy: what they are, where they came from, and that the numbers on
the toy's card are theirs."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

import interp.toy.corpus  # noqa: F401  (registers corpus = "toy")
from interp.dictionaries import evaluate_on_model, load_dictionary
from interp.runner.text_source import token_rows
from interp.runner.training_config import load_train_config, train_toml

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "interp" / "toy" / "dictionaries"
EXPERIMENT = ROOT / "experiments" / "train_toy_dictionaries.toml"
CARD = (ROOT / "interp" / "toy" / "README.md").read_text()
COLUMNS = ["explained_variance", "ce_clean", "ce_spliced", "ce_zero_ablated", "ce_loss_recovered", "kl"]
COLUMNS += ["dead_fraction", "dense_fraction"]


def card_row(name: str) -> dict[str, float]:
    row = re.search(rf"^\| {name} \|(.*)\|$", CARD, re.M)
    assert row, f"the toy's card has no row for {name}"
    cells = [c.strip() for c in row.group(1).split("|")]
    return dict(zip(COLUMNS, map(float, cells[-len(COLUMNS) :]), strict=True)) | {"d_sae": int(cells[2])}


def test_the_shipped_dictionaries_are_the_experiments_and_small():
    config = load_train_config(EXPERIMENT)
    digest = hashlib.sha256(train_toml(config).encode()).hexdigest()[:16]
    assert f"config hash `{digest}`" in CARD  # the card names the config that made them
    assert sorted(p.name for p in SHIPPED.iterdir()) == sorted(t.name for t in config.dictionary)
    for table in config.dictionary:
        d = load_dictionary(SHIPPED / table.name)
        assert (d.architecture, d.kind, d.hook_name, d.cfg.k) == (
            table.architecture,
            table.kind,
            table.hook,
            table.k,
        )
        assert d.hook_name_out == (table.hook_out or table.hook) and d.d_sae == table.expansion * 160 == 1280
        assert d.W_enc.dtype.is_floating_point and d.W_enc.element_size() == 4  # float32
        assert sum(p.stat().st_size for p in (SHIPPED / table.name).iterdir()) < 2 * 2**20


@pytest.mark.parametrize("name", ["resid2_topk", "mlp2_transcoder"])
def test_the_card_holds_the_metrics_of_the_files(name):
    saved = json.loads((SHIPPED / name / "metrics.json").read_text())
    row = card_row(name)
    assert saved["n_tokens"] == 20425 and row["d_sae"] == 1280
    for column in COLUMNS:
        assert row[column] == round(saved[column], 3), column


@pytest.mark.parametrize("name", ["resid2_topk", "mlp2_transcoder"])
def test_the_files_measure_what_the_card_says_on_held_out_tokens(name, toy_model):
    """The first 2 of the 16 held-out batches (the card's numbers are on all 16; the full measure
    equals metrics.json exactly, ~17 s a dictionary, too slow for the suite)."""
    data = load_train_config(EXPERIMENT).data
    held_out = list(token_rows(toy_model, data).batches(data.model_batch, max_tokens=data.eval_tokens))
    assert len(held_out) == 16 and sum(int(mask.sum()) for _, mask in held_out) == 20425
    metrics = evaluate_on_model(toy_model, load_dictionary(SHIPPED / name), held_out[:2], model_batch=64)
    row = card_row(name)
    assert metrics.l0 == pytest.approx(16.0)
    assert metrics.explained_variance == pytest.approx(row["explained_variance"], abs=0.01)
    assert metrics.ce_loss_recovered == pytest.approx(row["ce_loss_recovered"], abs=0.03)
    assert metrics.ce_clean < metrics.ce_zero_ablated and metrics.kl < 0.5
