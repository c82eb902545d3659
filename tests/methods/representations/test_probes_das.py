"""Probes and DAS (interp.methods.representations) on a model built by construction.

Every token's embedding is orthogonal to a unit direction r except the cue tokens': clean cues carry
+3r, corrupted cues -3r, each on top of its own random part. Layer 0 writes nothing, and one head of
layer 1 attends uniformly, reads r and writes the ANSWER - WRONG unembedding direction, so the answer
at the last token depends only on the cue's projection onto r (the last token's own embedding and the
answers' biases favour neither). Ground truth: the label is linearly
readable at the cue's position from the embedding on and at the last position only after layer 1;
position 0 (before the cue) carries nothing. The rank-1 DAS subspace at the cue position is r.
"""

from __future__ import annotations

import pytest
import torch

from interp.base.errors import HookNameError, InputError
from interp.methods.representations.das import fit_das
from interp.methods.representations.probes import activations_at, probe_layers, tokenize_prompts
from methods.representations.planted import ANSWER, WRONG
from methods.representations.planted import planted_pairs as _pairs
from methods.representations.planted import planted_prompts as _prompts


def test_construction_answers_by_the_cue(planted):
    model, _ = planted
    tokens, labels = _prompts(64, seed=3)
    logits = model(tokens)[:, -1]
    diff = logits[:, ANSWER] - logits[:, WRONG]
    assert ((diff > 0).long() == labels).all()


def test_probe_reads_the_label_only_where_it_is_written(planted):
    model, r = planted
    tokens, labels = _prompts(240, seed=1)
    hooks = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "blocks.1.hook_resid_post"]
    at_cue = probe_layers(model, tokens, labels, hooks, position=1)
    before_cue = probe_layers(model, tokens, labels, hooks, position=0)
    at_last = probe_layers(model, tokens, labels, hooks)
    print(
        "held-out accuracy at the cue",
        at_cue.accuracy.tolist(),
        "shuffled",
        at_cue.shuffled_accuracy.tolist(),
    )
    print("before the cue", before_cue.accuracy.tolist(), "at the last token", at_last.accuracy.tolist())
    assert at_cue.n_train + at_cue.n_test == 240  # duplicated prompts land on one side together
    assert (at_cue.accuracy >= 0.95).all()
    assert (at_cue.shuffled_accuracy <= 0.7).all()
    assert (before_cue.accuracy <= 0.7).all()
    # at the last token the label appears only once layer 1's head has written it
    assert at_last.accuracy[0] <= 0.7 and at_last.accuracy[1] <= 0.7 and at_last.accuracy[2] >= 0.95
    assert (at_last.shuffled_accuracy <= 0.7).all()
    w = at_cue.weights[0][1] - at_cue.weights[0][0]
    cosine = (w @ r / w.norm()).item()
    print("probe direction cosine with r", cosine)
    assert cosine > 0.5


def test_split_is_by_prompt(planted):
    model, _ = planted
    tokens, labels = _prompts(40, seed=2)
    doubled = torch.cat([tokens, tokens])
    result = probe_layers(
        model, doubled, torch.cat([labels, labels]), ["blocks.0.hook_resid_pre"], position=1
    )
    assert result.n_test % 2 == 0 and result.n_test + result.n_train == 80


def test_probe_refuses_bad_input(planted):
    model, _ = planted
    tokens, labels = _prompts(20, seed=0)
    with pytest.raises(HookNameError, match="Unknown hook name"):
        probe_layers(model, tokens, labels, ["blocks.0.hook_resid_prex"])
    with pytest.raises(InputError, match="position=4"):
        probe_layers(model, tokens, labels, ["blocks.0.hook_resid_pre"], position=4)
    with pytest.raises(InputError, match="one label per prompt"):
        probe_layers(model, tokens, labels[:5].tolist(), ["blocks.0.hook_resid_pre"])
    with pytest.raises(InputError, match="test_fraction"):
        probe_layers(model, tokens, labels, ["blocks.0.hook_resid_pre"], test_fraction=1.0)


def test_das_recovers_the_planted_direction(planted):
    model, r = planted
    base, source, targets = _pairs(320, seed=5)
    result = fit_das(
        model, base, source, [ANSWER, WRONG], targets, "blocks.1.hook_resid_pre", position=1,
        rank=1, epochs=30, lr=0.05, seed=0,
    )  # fmt: skip
    cosine = (result.basis[:, 0] @ r).abs().item()
    print(
        f"DAS cosine {cosine:.3f}; held-out interchange accuracy {result.accuracy.item():.3f}, "
        f"mean difference {result.mean_difference_accuracy.item():.3f}, random {result.random_accuracy.item():.3f}"
    )
    assert result.basis.shape == (model.cfg.d_model, 1)
    assert cosine >= 0.95
    assert result.accuracy >= 0.95
    assert result.random_accuracy <= 0.7
    assert result.losses[-1] < result.losses[0]


def test_das_at_a_position_without_the_variable_does_not_transfer(planted):
    """Position 0 holds a filler: no subspace there carries the cue, so interchange stays near chance."""
    model, _ = planted
    base, source, targets = _pairs(160, seed=6)
    result = fit_das(
        model, base, source, [ANSWER, WRONG], targets, "blocks.1.hook_resid_pre", position=0, epochs=5
    )
    assert result.accuracy <= 0.7


def test_das_refuses_bad_input(planted):
    model, _ = planted
    base, source, targets = _pairs(20, seed=0)
    with pytest.raises(InputError, match="answers"):
        fit_das(model, base, source, [ANSWER], targets, "blocks.1.hook_resid_pre")
    with pytest.raises(InputError, match="targets"):
        fit_das(model, base, source, [ANSWER, WRONG], targets + 2, "blocks.1.hook_resid_pre")
    with pytest.raises(InputError, match="rank"):
        fit_das(model, base, source, [ANSWER, WRONG], targets, "blocks.1.hook_resid_pre", rank=0)
    with pytest.raises(HookNameError):
        fit_das(model, base, source, [ANSWER, WRONG], targets, "blocks.9.hook_resid_pre")


def test_text_prompts_of_several_lengths_read_each_prompts_own_position(planted):
    """Strings are tokenized one by one and run per length: each row is that prompt's own activation."""
    model, _ = planted
    prompts = [
        "Mary and John. John gave it to",
        "When Mary and John went to the store, John gave a drink to",
        "Mary",
    ]
    tokens, lengths = tokenize_prompts(model, prompts)
    assert len(set(lengths.tolist())) == 3
    hooks = ["blocks.0.hook_resid_pre", "blocks.1.attn.hook_z"]
    for position in (-1, 0):
        acts = activations_at(model, tokens, lengths, hooks, position)
        for i, prompt in enumerate(prompts):
            _, cache = model.run_with_cache(prompt, names_filter=hooks)
            for name in hooks:
                assert torch.allclose(acts[name][i], cache[name][0, position].flatten(), atol=1e-5)
    with pytest.raises(InputError, match="shortest prompt"):
        activations_at(model, tokens, lengths, hooks, -2)
