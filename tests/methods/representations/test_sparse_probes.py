"""Sparse probes (interp.methods.representations.sparse_probes) on a label planted in known units.

Ground truth (`planted.save_planted_units`): at the cue's position only layer 0's ON_NEURONS and
OFF_NEURONS (and a planted SAE's ON_LATENTS / OFF_LATENTS) depend on the label, each one enough on
its own; every other unit reads the cue token's own random embedding, 140 tokens per class. So the
training-split ranking must put exactly the planted units first, a probe on them reads the label
(~1.0), a probe on as many random units sits near chance, and at position 0 (a filler) nothing reads it.
"""

from __future__ import annotations

import pytest
import torch

from interp.base.errors import HookNameError, InputError
from interp.dictionaries.splice import splice
from interp.methods.representations.sparse_probes import sparse_probe
from methods.representations.planted import (
    OFF_LATENTS,
    OFF_NEURONS,
    ON_LATENTS,
    ON_NEURONS,
    planted_sae,
    planted_unit_prompts,
)

NEURONS = "blocks.0.mlp.hook_post"


def test_top_units_are_the_planted_neurons(planted_units):
    model, _ = planted_units
    tokens, labels = planted_unit_prompts(400, seed=1)
    planted = set(ON_NEURONS + OFF_NEURONS)
    ks = [1, 2, len(planted), 16]
    curve = sparse_probe(model, tokens, labels, NEURONS, ks, position=1, n_random=8, n_shuffles=8)
    print("accuracy", curve.accuracy.tolist(), "random", curve.random_accuracy.tolist())
    print("shuffled", curve.shuffled_accuracy.tolist(), "top units", curve.ranking[:6].tolist())
    assert set(curve.units(len(planted)).tolist()) == planted
    at_planted = ks.index(len(planted))
    assert curve.accuracy[at_planted] >= 0.98
    assert curve.accuracy[0] >= 0.98  # each planted neuron is enough on its own
    assert (curve.random_accuracy[: at_planted + 1] <= 0.7).all()
    # a shuffled-label refit still picks the planted neurons (the largest spread), with a sign that is
    # a coin flip: single refits land near 0 or 1, their mean near chance
    assert curve.shuffled_accuracy.mean() <= 0.75
    assert curve.n_rejected == 0
    # signs: ON neurons fire for the positive label, OFF neurons for the negative one
    assert (curve.scores[list(ON_NEURONS)] > 0).all() and (curve.scores[list(OFF_NEURONS)] < 0).all()
    assert curve.n_train + curve.n_test == 400


def test_nothing_is_read_where_nothing_is_written(planted_units):
    model, _ = planted_units
    tokens, labels = planted_unit_prompts(400, seed=1)
    curve = sparse_probe(model, tokens, labels, NEURONS, [4, 16], position=0, n_random=0, n_shuffles=0)
    assert (curve.accuracy <= 0.7).all()
    assert curve.random_accuracy.isnan().all()  # no random subsets were asked for


def test_top_latents_are_the_planted_latents(planted_units):
    model, r = planted_units
    sae = planted_sae(r)
    tokens, labels = planted_unit_prompts(400, seed=2)
    planted = set(ON_LATENTS + OFF_LATENTS)
    with splice(model, [sae], error=True) as spliced:
        curve = sparse_probe(
            model, tokens, labels, spliced.name(sae, "hook_acts"), [len(planted), 8], position=1, n_random=8
        )
    print("latents: accuracy", curve.accuracy.tolist(), "random", curve.random_accuracy.tolist())
    assert curve.hook == "blocks.0.hook_resid_pre.dict.hook_acts"
    assert set(curve.units(len(planted)).tolist()) == planted
    assert curve.accuracy[0] >= 0.98
    assert curve.random_accuracy[0] <= 0.7


def test_one_label_against_the_rest(planted_units):
    """Three labels: 2 marks half of the positive cues; reading 0 (negative cues) against the rest finds
    the OFF/ON neurons, as the binary labels did; `positive` changes what is read."""
    model, _ = planted_units
    tokens, labels = planted_unit_prompts(400, seed=3)
    three = torch.where((labels == 1) & (torch.arange(400) % 2 == 0), 2, labels)
    curve = sparse_probe(model, tokens, three, NEURONS, [4], position=1, positive=0, n_random=0)
    assert set(curve.units(4).tolist()) == set(ON_NEURONS + OFF_NEURONS)
    assert curve.accuracy[0] >= 0.98 and curve.positive == 0
    assert (curve.scores[list(OFF_NEURONS)] > 0).all()  # 0 is now the positive class
    split_positive = sparse_probe(model, tokens, three, NEURONS, [4], position=1, positive=2, n_random=0)
    assert split_positive.accuracy[0] < curve.accuracy[0]  # label 2 is not written anywhere apart from 1
    assert curve.to_dict()["units"] == curve.ranking[:4].tolist()


def test_sparse_probe_refuses_bad_input(planted_units):
    model, _ = planted_units
    tokens, labels = planted_unit_prompts(40, seed=0)
    with pytest.raises(InputError, match="strictly increasing"):
        sparse_probe(model, tokens, labels, NEURONS, [4, 2], position=1)
    with pytest.raises(InputError, match="strictly increasing"):
        sparse_probe(model, tokens, labels, NEURONS, [1000], position=1)
    with pytest.raises(InputError, match="positive=5"):
        sparse_probe(model, tokens, labels, NEURONS, [2], position=1, positive=5)
    with pytest.raises(InputError, match="one label per prompt"):
        sparse_probe(model, tokens, labels[:3].tolist(), NEURONS, [2], position=1)
    with pytest.raises(HookNameError):
        sparse_probe(model, tokens, labels, "blocks.0.mlp.hook_postt", [2], position=1)
    curve = sparse_probe(model, tokens, labels, NEURONS, [2], position=1, n_random=0)
    with pytest.raises(InputError, match="k=3 was not probed"):
        curve.units(3)
