"""The analysis registry (interp.runner.registry): every kind runs, has the dims it declares, and is
what config validation and `interp tasks` know."""

from __future__ import annotations

import pytest
import torch
from dictionary_files import saved
from helpers import ioi_pairs
from test_kinds import toy_transcoders

from interp.runner.config import ConfigError, parse_config
from interp.runner.registry import REGISTRY, UnitContext, spec_for

CTX = UnitContext(metric="logit_diff", seed=0, memory_budget=2**30)


@pytest.fixture(scope="module")
def pairs(toy_model):
    return ioi_pairs(toy_model.tokenizer, 3, seed=1)


def analysis(kind: str, **options):
    return parse_config({"analysis": [{"kind": kind, **options}]}).analysis[0]


@pytest.fixture(scope="module")
def more_pairs(toy_model):
    return ioi_pairs(toy_model.tokenizer, 8, seed=1)


# kinds that hold prompts out need more than three pairs; their defaults read every layer (kept small here)
HELD_OUT = {
    "probe": {"max_iter": 20},
    "sparse_probe": {"ks": [1, 2], "labels": "clean_or_corrupted", "max_iter": 50},
    "das": {"epochs": 1},
}


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_every_kind_computes_its_declared_dims_and_finishes_finite(kind, toy_model, pairs, more_pairs):
    spec = spec_for(kind)
    pairs = more_pairs if kind in HELD_OUT else pairs
    needs_files = (
        "dictionary_eval",
        "feature_attribution",
        "feature_circuit",
        "feature_cards",
    )  # no defaults
    extra = {"dictionaries": [str(saved()["sae"])]} if kind in needs_files else {}
    if kind == "attribution_graph":
        extra = {"transcoders": toy_transcoders(0)}
    extra |= HELD_OUT.get(kind, {})
    options = analysis(kind, **extra)
    computed = spec.compute(options, toy_model, pairs, CTX)
    assert tuple(computed.dims) == spec.dims(options)
    sizes = {"layer": 4, "head": 4, "pos": pairs.clean_tokens.shape[1], "component": 2, "edge": 463}
    sizes |= {"ranking": 2, "fraction": 10, "multiplier": 4, "sample": 2}
    sizes |= {"feature": 16, "statistic": 3}  # feature_cards: top_n 16 latents
    sizes |= {"dictionary": 1, "metric": 12}  # dictionary_eval: one dictionary
    if kind == "feature_attribution":
        sizes["feature"] = 64 + 1  # every latent of the SAE and its error term
    if kind == "feature_circuit":
        sizes["feature"] = 20  # the default top_k kept nodes
    sizes |= {"node": len((computed.labels or {}).get("node", []))}
    sizes |= {
        "hook": 5,
        "measure": 4 if kind == "sparse_probe" else 3,
        "subspace": 3,
        "k": 2,
    }  # 4 resid_pre + 1  # attribution_graph: the nodes kept
    expected_shape = tuple(sizes[d] for d in computed.dims) + ((len(pairs),) if spec.per_prompt else ())
    if kind == "logit_lens":
        expected_shape = (5, len(pairs))  # the embedding and after each of the 4 layers
    if kind == "steer":
        expected_shape = (5, 4)  # every layer and the final residual x the default multipliers
    if kind == "generate":
        expected_shape = (2,)  # the default two samples
    assert tuple(computed.values.shape) == expected_shape
    mean = computed.values.mean(-1) if spec.per_prompt else computed.values
    finished = spec.finish(options, mean, 5.0, -1.0)
    assert torch.isfinite(finished.values).all() and finished.description
    assert spec.explanation and spec.summary
    assert spec.figures or computed.extra.get("samples")  # generate shows its text as a table


def test_noising_patches_mean_no_effect_at_one():
    spec = spec_for("patch_head_out")
    assert spec.finish(analysis("patch_head_out"), torch.zeros(2), 1.0, 0.0).no_effect == 0.0
    assert (
        spec.finish(analysis("patch_head_out", direction="noising"), torch.zeros(2), 1.0, 0.0).no_effect
        == 1.0
    )


def test_path_patch_with_senders_is_a_scalar():
    assert spec_for("path_patch").dims(analysis("path_patch", senders=[[0, 1]])) == ()


def test_an_option_the_kind_does_not_read_is_an_error():
    with pytest.raises(ConfigError, match="dla_head does not read method"):
        analysis("dla_head", method="zero")


def test_unknown_kinds_suggest_registered_ones():
    with pytest.raises(ConfigError, match="did you mean 'ablate_head'"):
        analysis("ablate_heads")


def test_interp_tasks_lists_every_registered_kind(capsys):
    from interp.cli import main

    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert all(kind in out for kind in REGISTRY)
