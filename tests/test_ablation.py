"""Ablations: context managers remove their hooks, sweeps equal one-at-a-time ablation, toy circuits."""

from __future__ import annotations

import pytest
import torch
from helpers import ioi_pairs

from interp.data.metrics import make_metric
from interp.methods.ablation import Component, ablate, ablation_sweep
from interp.model.hooks import active_hook_count
from interp.toy.vocab import TRAIN_TEMPLATES


@pytest.fixture(scope="module")
def pairs(toy_model):
    return ioi_pairs(toy_model.tokenizer, 6, seed=21)


def final_metric(model, pairs) -> torch.Tensor:
    with torch.no_grad():
        logits = model(pairs.clean_tokens)[:, -1]
    return make_metric("logit_diff", pairs.answer, pairs.wrong)(logits, torch.arange(len(pairs)))


class TestContextManager:
    def test_hooks_removed_when_the_block_raises(self, toy_model):
        with pytest.raises(ZeroDivisionError):
            with ablate(toy_model, [Component("head", 1, 2), Component("mlp", 0)]):
                assert active_hook_count(toy_model) == 2
                _ = 1 / 0
        assert active_hook_count(toy_model) == 0

    def test_nested_ablations_compose(self, toy_model, pairs):
        with ablate(toy_model, [Component("head", 2, 1)]):
            one = final_metric(toy_model, pairs)
            with ablate(toy_model, [Component("head", 3, 0)]):
                both = final_metric(toy_model, pairs)
            assert torch.allclose(final_metric(toy_model, pairs), one)
        with ablate(toy_model, [Component("head", 2, 1), Component("head", 3, 0)]):
            assert torch.allclose(final_metric(toy_model, pairs), both)

    def test_zero_ablating_every_head_equals_zeroing_attention_minus_bias(self, toy_model, pairs):
        heads = [Component("head", 1, h) for h in range(toy_model.cfg.n_heads)]
        _, cache = toy_model.run_with_cache(pairs.clean_tokens, names_filter=["blocks.1.hook_attn_out"])
        with ablate(toy_model, heads):
            _, ablated = toy_model.run_with_cache(pairs.clean_tokens, names_filter=["blocks.1.hook_attn_out"])
        bias = toy_model.b_O[1]
        assert torch.allclose(
            ablated["blocks.1.hook_attn_out"], bias.expand_as(ablated["blocks.1.hook_attn_out"]), atol=1e-5
        )
        assert not torch.allclose(cache["blocks.1.hook_attn_out"], ablated["blocks.1.hook_attn_out"])

    def test_bad_component_and_method(self, toy_model):
        with pytest.raises(ValueError, match="index in 0..3"):
            with ablate(toy_model, [Component("head", 0, 9)]):
                pass
        with pytest.raises(ValueError, match="needs reference tokens"):
            with ablate(toy_model, [Component("mlp", 0)], "mean"):
                pass
        assert active_hook_count(toy_model) == 0


class TestSweep:
    @pytest.mark.parametrize("method", ["zero", "mean"])
    def test_sweep_equals_one_head_at_a_time(self, toy_model, pairs, method):
        result = ablation_sweep(toy_model, pairs, method, reduce="none")  # mean over corrupted prompts
        clean = final_metric(toy_model, pairs)
        for layer, head in [(0, 0), (1, 3), (2, 1), (3, 2)]:
            with ablate(
                toy_model, [Component("head", layer, head)], method, reference=pairs.corrupted_tokens
            ):
                ablated = final_metric(toy_model, pairs)
            assert torch.allclose(result.values[layer, head], ablated - clean, atol=1e-4)

    def test_resample_from_corrupted_equals_noising_head_patching(self, toy_model, pairs):
        from interp.methods.activation_patching import sweep

        ablated = ablation_sweep(toy_model, pairs, "resample", reference="corrupted")
        noised = sweep(toy_model, pairs, "head_out", direction="noising")
        assert torch.allclose(ablated.values, noised.values - noised.clean, atol=1e-5)

    def test_mixed_lengths(self, toy_model):
        mixed = ioi_pairs(toy_model.tokenizer, 6, seed=8, templates=TRAIN_TEMPLATES[:40])
        result = ablation_sweep(toy_model, mixed, "mean", reduce="none")
        for index in mixed.length_groups():
            alone = ablation_sweep(toy_model, mixed.select(index), "zero", reduce="none")
            zero = ablation_sweep(toy_model, mixed, "zero", reduce="none")
            assert torch.allclose(zero.values[..., index], alone.values, atol=1e-5)
        assert torch.isfinite(result.values).all()
