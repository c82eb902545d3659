"""The worker (interp.runner.worker): units planned per batch, dims checked, baselines from the core."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import interp.runner.registry as registry
from interp.runner.config import parse_config
from interp.runner.worker import BASELINE, UnitWorker, compute_unit, plan_units

CONFIG = {
    "seed": 1,
    "batch_size": 3,
    "task": {"name": "ioi", "n_pairs": 7},
    "analysis": [{"kind": "dla_head"}, {"kind": "head_scores"}],
}


@pytest.fixture(scope="module")
def worker():
    return UnitWorker(parse_config(CONFIG))


def test_plan_has_a_unit_per_batch_for_per_prompt_kinds():
    plan = plan_units(parse_config(CONFIG), 7)
    assert plan.batches == [[0, 1, 2], [3, 4, 5], [6]]
    assert plan.units == [(BASELINE, 0), (BASELINE, 1), (BASELINE, 2), ("dla_head", 0), ("dla_head", 1)] + [
        ("dla_head", 2),
        ("head_scores", None),
    ]


def test_baseline_equals_the_bridge(worker):
    """Independent path: the bridge's forward, each prompt at its own final position."""
    baseline = worker.compute(BASELINE, 0)
    pairs = worker.pairs.select(worker.plan.batches[0])
    rows = torch.arange(len(pairs))
    with torch.no_grad():
        for which, row in (("clean", 0), ("corrupted", 1)):
            final = pairs.at_final(worker.model(getattr(pairs, f"{which}_tokens")))
            expected = final[rows, pairs.answer] - final[rows, pairs.wrong]
            assert (baseline.values[row] - expected).abs().max() <= 1e-4


def test_units_of_one_batch_are_the_whole_run_restricted_to_it(worker):
    whole = compute_unit(worker.by_label["dla_head"], worker.model, worker.pairs, worker.config)
    part = worker.compute("dla_head", 1)
    assert (part.values - whole.values[..., 3:6]).abs().max() <= 1e-4


def test_dims_that_disagree_with_the_registry_are_an_error(worker, monkeypatch):
    spec = registry.REGISTRY["dla_head"]
    wrong = dataclasses.replace(spec, dims=lambda options: ("layer",))
    monkeypatch.setitem(registry.REGISTRY, "dla_head", wrong)
    with pytest.raises(RuntimeError, match="registry entry says"):
        worker.compute("dla_head", 0)


def test_local_executor_is_an_executor():
    from interp.runner.backends.base import Executor
    from interp.runner.backends.local import LocalExecutor

    executor = LocalExecutor(parse_config(CONFIG))
    assert isinstance(executor, Executor) and executor.n_pairs() == 7


@pytest.mark.parametrize(
    "table, expected",
    [
        (
            {"kind": "steer", "layers": [1, 9]},
            r"analysis 'steer' \(steer\): layers = \[9\] are not layers of this model; use 0 .. 4",
        ),
        (
            {"kind": "generate", "heads": [[0, 7]]},
            r"analysis 'generate' \(generate\): heads = \[\[0, 7\]\] are not heads of this model \(layers 0..3, heads 0..3\)",
        ),
        (
            {"kind": "path_patch", "senders": [[5, 0]], "name": "pp"},
            r"analysis 'pp' \(path_patch\): senders \[\[5, 0\]\] are not heads of this model",
        ),
        (
            {"kind": "path_patch", "receivers": [[1, 9]]},
            r"analysis 'path_patch' \(path_patch\): receivers \[\[1, 9\]\] are not heads",
        ),
    ],
)
def test_every_kind_checks_its_options_against_the_model_before_any_unit(worker, table, expected):
    from interp.runner.config import ConfigError
    from interp.runner.worker import check_before_compute

    config = parse_config({**CONFIG, "analysis": [table]})
    with pytest.raises(ConfigError, match=expected):
        check_before_compute(config, worker.model, worker.pairs)
