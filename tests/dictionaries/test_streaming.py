"""Activations streamed through the bridge, and several dictionaries trained from one forward."""

from __future__ import annotations

import pytest
import torch

from interp.base.errors import HookNameError, InputError
from interp.dictionaries import make_dictionary, train_dictionary
from interp.dictionaries.streaming import model_activations, read_point, stop_layer, train_from_model
from interp.model.cache import cache_activations

NAMES = ["blocks.1.ln1.hook_normalized", "blocks.1.hook_mlp_out", "blocks.2.hook_resid_pre"]


def test_activations_equal_a_full_cached_forward_and_the_forward_stops_early(toy_model, toy_batches):
    tokens, mask = toy_batches[0]
    later = []
    handle = toy_model.original_model.model.layers[2].register_forward_hook(lambda *args: later.append(1))
    try:
        acts = model_activations(toy_model, tokens, NAMES, mask=mask)
        assert later == []  # block 2 never ran: blocks.2.hook_resid_pre is read as blocks.1.hook_resid_post
        reference = cache_activations(toy_model, tokens, NAMES)
        assert later == [1]
    finally:
        handle.remove()
    assert stop_layer(toy_model, NAMES) == 3 and stop_layer(toy_model, ["ln_final.hook_normalized"]) is None
    assert [read_point(n) for n in NAMES] == [*NAMES[:2], "blocks.1.hook_resid_post"]
    assert read_point("blocks.0.hook_resid_pre") == "blocks.0.hook_resid_pre"
    for name in NAMES:
        torch.testing.assert_close(acts[name], reference[name][mask], rtol=0, atol=0)
    assert acts[NAMES[0]].shape == (int(mask.sum()), 160)


def test_bad_hooks_are_refused(toy_model, toy_batches):
    tokens, _ = toy_batches[0]
    with pytest.raises(HookNameError, match="blocks.1.hook_resid_mid"):
        model_activations(toy_model, tokens, ["blocks.1.hook_resid_mid"])
    with pytest.raises(InputError, match="shape \\[batch, pos, width\\]"):
        model_activations(toy_model, tokens, ["blocks.1.attn.hook_z"])
    with pytest.raises(InputError, match="no hook_name"):
        train_from_model(toy_model, tokens, [make_dictionary("topk", d_in=160, d_sae=32, k=4)])


@pytest.mark.slow
def test_several_dictionaries_from_one_forward_equal_training_each_on_cached_activations(
    toy_model, toy_batches
):
    def fresh():
        return [
            make_dictionary("topk", d_in=160, d_sae=64, k=8, hook_name="blocks.2.hook_resid_pre"),
            make_dictionary(
                "relu", d_in=160, d_sae=64, kind="transcoder", hook_name="blocks.1.ln1.hook_normalized",
                hook_name_out="blocks.1.hook_mlp_out", l1_coefficient=0.01,
            ),
        ]  # fmt: skip

    options = dict(batch_tokens=128, buffer_tokens=512, n_tokens=2000, log_every=5)
    forwards = []
    run_with_cache = toy_model.run_with_cache

    def counting(*args, **kwargs):
        forwards.append(kwargs.get("stop_at_layer"))
        return run_with_cache(*args, **kwargs)

    toy_model.run_with_cache = counting
    try:
        streamed = train_from_model(toy_model, iter(toy_batches), fresh(), **options)
    finally:
        del toy_model.run_with_cache
    assert len(forwards) <= len(toy_batches) and set(forwards) == {2}  # one forward per batch for both

    cached = [model_activations(toy_model, tokens, NAMES, mask=mask) for tokens, mask in toy_batches]
    sae, transcoder = fresh()
    train_dictionary(sae, (a["blocks.2.hook_resid_pre"] for a in cached), **options)
    pairs = ((a["blocks.1.ln1.hook_normalized"], a["blocks.1.hook_mlp_out"]) for a in cached)
    train_dictionary(transcoder, pairs, **options)
    for ours, reference in zip(streamed, [sae, transcoder], strict=True):
        assert ours.training_log[-1]["tokens"] == reference.training_log[-1]["tokens"] > 1000
        for (name, a), (_, b) in zip(ours.state_dict().items(), reference.state_dict().items(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
