"""Attribution patching (interp.methods.attribution_patching): the estimate is the directional
derivative of the metric, checked against an independent finite difference through the bridge's hooks."""

from __future__ import annotations

import pytest
import torch
from helpers import ioi_pairs

from interp.data.prompts import PromptPairs
from interp.methods.attribution_patching import ESTIMATED_SITES, attribution_patch
from interp.model.cache import cache_activations
from interp.model.hooks import active_hook_count


@pytest.fixture(scope="module")
def pairs(toy_model):
    return ioi_pairs(toy_model.tokenizer, 6, seed=5)


def metric_with_z(model, pairs, layer, head, z_base, z_source, eps):
    """Mean logit difference of the corrupted run with one head's z moved eps of the way to the clean z."""

    def hook(z, hook):
        z = z.clone()
        z[:, :, head] = z_base[:, :, head] + eps * (z_source[:, :, head] - z_base[:, :, head])
        return z

    with torch.no_grad(), model.hooks(fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)]):
        final = pairs.at_final(model(pairs.corrupted_tokens))
    rows = torch.arange(len(pairs))
    return (final[rows, pairs.answer] - final[rows, pairs.wrong]).mean().item()


@pytest.mark.parametrize("layer, head", [(0, 1), (1, 0), (2, 3), (3, 2)])
def test_head_estimate_is_the_directional_derivative(toy_model, pairs, layer, head):
    estimate = attribution_patch(toy_model, pairs)["head_out"].values[layer, head].item()
    name = f"blocks.{layer}.attn.hook_z"
    z_clean = cache_activations(toy_model, pairs.clean_tokens, [name])[name]
    z_corrupted = cache_activations(toy_model, pairs.corrupted_tokens, [name])[name]
    eps = 1e-2
    plus = metric_with_z(toy_model, pairs, layer, head, z_corrupted, z_clean, eps)
    minus = metric_with_z(toy_model, pairs, layer, head, z_corrupted, z_clean, -eps)
    derivative = (plus - minus) / (2 * eps)
    assert estimate == pytest.approx(derivative, rel=2e-2, abs=2e-3)
    assert active_hook_count(toy_model) == 0


def test_identical_runs_estimate_nothing(toy_model, pairs):
    same = PromptPairs(pairs.clean_tokens, pairs.clean_tokens, pairs.lengths, pairs.answer, pairs.wrong)
    for site, result in attribution_patch(toy_model, same).items():
        assert result.values.abs().max() == 0, site


def test_heads_sum_their_positions_and_sites_have_their_dims(toy_model, pairs):
    results = attribution_patch(toy_model, pairs)
    assert set(results) == set(ESTIMATED_SITES)
    for site, result in results.items():
        assert result.dims == ESTIMATED_SITES[site] and result.measures == "change"
    by_pos = results["head_out_by_pos"].values.sum(-1)
    assert (by_pos - results["head_out"].values).abs().max() <= 1e-5
