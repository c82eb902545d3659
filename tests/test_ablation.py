"""Ablations: context managers remove their hooks and run the vocabulary's `Ablate` as
`run_with_interventions(target="bridge")` does, sweeps equal one-at-a-time ablation and take `Ablate`
items, toy circuits."""

from __future__ import annotations

import pytest
import torch
from helpers import ioi_pairs

from interp.base.errors import InputError
from interp.data.metrics import make_metric
from interp.methods.ablation import Component, ablate, ablation_sweep, head_ablations
from interp.methods.hooked_run import run_with_interventions
from interp.methods.interventions import Ablate
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


class TestContextManagerRunsTheVocabulary:
    """`ablate` is `Ablate` items on the bridge's intervention path: the same logits as
    run_with_interventions(target="bridge") with those items, hooks gone afterwards whatever happens."""

    @pytest.mark.parametrize("method", ["zero", "mean", "resample"])
    def test_equals_run_with_interventions_on_the_bridge(self, toy_model, pairs, method):
        components = [Component("head", 1, 2), Component("mlp", 0), Component("neuron", 2, 7)]
        reference = None if method == "zero" else pairs.corrupted_tokens
        items = [Ablate(c, method, reference=reference, seed=4) for c in components]
        expected = run_with_interventions(toy_model, pairs.clean_tokens, items, target="bridge")
        with ablate(toy_model, components, method, reference=reference, seed=4), torch.no_grad():
            got = toy_model(pairs.clean_tokens)
        assert torch.equal(got, expected)
        assert (got - toy_model(pairs.clean_tokens)).abs().max() > 1e-3
        assert active_hook_count(toy_model) == 0

    @pytest.mark.parametrize("method", ["mean", "resample"])
    def test_hooks_removed_when_the_body_raises_even_inside_another_ablation(self, toy_model, pairs, method):
        with ablate(toy_model, [Component("attn", 0)]):
            with pytest.raises(RuntimeError, match="body failed"):
                with ablate(
                    toy_model, [Component("head", 2, 1), Component("mlp", 3)], method,
                    reference=pairs.corrupted_tokens,
                ):  # fmt: skip
                    assert active_hook_count(toy_model) == 3
                    raise RuntimeError("body failed")
            assert active_hook_count(toy_model) == 1  # the outer block's hook stays
        assert active_hook_count(toy_model) == 0

    def test_mean_over_prompts_of_several_lengths_pools_every_position(self, toy_model):
        mixed = ioi_pairs(toy_model.tokenizer, 6, seed=8, templates=TRAIN_TEMPLATES[:40])
        groups = [mixed.select(index).corrupted_tokens for index in mixed.length_groups()]
        assert len({g.shape[1] for g in groups}) > 1  # the fixture really mixes lengths
        point = "blocks.1.hook_mlp_out"
        _, caches = zip(*(toy_model.run_with_cache(g, names_filter=[point]) for g in groups), strict=True)
        acts = [c[point].reshape(-1, toy_model.cfg.d_model) for c in caches]
        mean = torch.cat(acts).mean(0)  # planted: every prompt and position counts once
        tokens = groups[0]
        expected = toy_model.run_with_hooks(
            tokens, fwd_hooks=[(point, lambda act, hook: mean.expand_as(act).clone())]
        )
        with ablate(toy_model, [Component("mlp", 1)], "mean", reference=groups), torch.no_grad():
            got = toy_model(tokens)
        assert torch.allclose(got, expected, atol=1e-4)
        with pytest.raises(InputError, match=r"a list of them only for 'mean'"):
            with ablate(toy_model, [Component("mlp", 1)], "resample", reference=groups):
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


class TestSweepTakesAblateItems:
    @pytest.mark.parametrize("method", ["zero", "mean", "resample", "counterfactual"])
    def test_items_for_every_head_equal_the_method_name(self, toy_model, pairs, method):
        by_name = ablation_sweep(toy_model, pairs, method, reference="corrupted", seed=3)
        by_items = ablation_sweep(
            toy_model, pairs, head_ablations(toy_model, method, 3), reference="corrupted"
        )
        assert torch.equal(by_items.values, by_name.values)
        assert by_items.site == by_name.site

    def test_a_subset_of_heads_is_measured_and_the_rest_is_nan(self, toy_model, pairs):
        every = ablation_sweep(toy_model, pairs, "mean", reduce="none")
        some = [Ablate(Component("head", 1, 3), "mean"), Ablate(Component("head", 3, 0), "mean")]
        result = ablation_sweep(toy_model, pairs, some, reduce="none")
        measured = torch.zeros(toy_model.cfg.n_layers, toy_model.cfg.n_heads, dtype=torch.bool)
        measured[1, 3] = measured[3, 0] = True
        # the same computation in a different batch of variants: equal up to float32 reduction order
        # (bit-equal with one thread; with several, a batch's split over threads follows its size)
        torch.testing.assert_close(result.values[measured], every.values[measured], rtol=0, atol=1e-5)
        assert result.values[~measured].isnan().all()

    def test_what_a_sweep_cannot_run_is_refused(self, toy_model, pairs):
        head = Component("head", 0, 1)
        for items, message in [
            ([Ablate(Component("mlp", 0))], r"ablates heads, one at a time.*ablate\(\)"),
            ([Ablate("blocks.0.attn.hook_z")], r"ablates heads, one at a time"),
            ([Ablate(head, "mean", reference=pairs.clean_tokens)], r"reference of its own.*reference=None"),
            ([Ablate(head, positions=[1])], r"at every position"),
            ([Ablate(head, "zero"), Ablate(Component("head", 0, 2), "mean")], r"one method and seed"),
            ([Ablate(head), Ablate(head)], r"heads \[\(0, 1\)\] are given more than once"),
            ([], r"non-empty list of Ablate"),
        ]:
            with pytest.raises(InputError, match=message):
                ablation_sweep(toy_model, pairs, items)
        with pytest.raises(InputError, match=r"seed=2 goes with a method name"):
            ablation_sweep(toy_model, pairs, head_ablations(toy_model, "resample"), seed=2)
