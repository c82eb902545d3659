"""Exact patching: equal to transformer-lens's patching module, and the invariants that must hold."""

from __future__ import annotations

import pytest
import torch
from helpers import ioi_pairs
from transformer_lens import patching as tl_patching

from interp.data.metrics import Metric
from interp.data.prompts import PromptError, PromptPairs
from interp.methods.activation_patching import SITE_DIMS, sweep
from interp.methods.interventions import Patch
from interp.methods.joint_patching import run_patched
from interp.model.hooks import active_hook_count
from interp.model.loading import load_model
from interp.toy.vocab import TRAIN_TEMPLATES

TL_FUNCTIONS = {
    "resid_pre": (tl_patching.get_act_patch_resid_pre, None),
    "attn_out": (tl_patching.get_act_patch_attn_out, None),
    "mlp_out": (tl_patching.get_act_patch_mlp_out, None),
    "head_out": (tl_patching.get_act_patch_attn_head_out_all_pos, None),
    "head_out_by_pos": (tl_patching.get_act_patch_attn_head_out_by_pos, (0, 2, 1)),  # TL: layer pos head
    "head_q": (tl_patching.get_act_patch_attn_head_q_all_pos, None),
    "head_k": (tl_patching.get_act_patch_attn_head_k_all_pos, None),
    "head_v": (tl_patching.get_act_patch_attn_head_v_all_pos, None),
    "head_pattern": (tl_patching.get_act_patch_attn_head_pattern_all_pos, None),
}


def tl_metric(pairs: PromptPairs):
    rows = torch.arange(len(pairs))

    def metric(logits):
        final = logits[:, -1]
        return (final[rows, pairs.answer] - final[rows, pairs.wrong]).mean()

    return metric


@pytest.fixture(scope="module")
def tiny(tiny_phi_dir):
    return load_model(tiny_phi_dir)


@pytest.mark.parametrize("site", list(TL_FUNCTIONS))
@pytest.mark.parametrize("which", ["toy", "tiny"])
def test_equals_transformer_lens(site, which, toy_model, tiny):
    model = toy_model if which == "toy" else tiny
    pairs = ioi_pairs(model.tokenizer, 3, seed=1)
    tl_fn, permutation = TL_FUNCTIONS[site]
    _, clean_cache = model.run_with_cache(pairs.clean_tokens)
    expected = tl_fn(model, pairs.corrupted_tokens, clean_cache, tl_metric(pairs)).cpu()
    if permutation:
        expected = expected.permute(*permutation)
    result = sweep(model, pairs, site)
    assert result.dims == SITE_DIMS[site] and result.values.shape == expected.shape
    assert (result.values - expected).abs().max() <= 1e-5 * max(1.0, expected.abs().max().item())
    assert active_hook_count(model) == 0


class TestInvariants:
    def test_clean_to_clean_gives_the_clean_metric(self, toy_model):
        pairs = ioi_pairs(toy_model.tokenizer, 4, seed=2)
        same = PromptPairs(pairs.clean_tokens, pairs.clean_tokens, pairs.lengths, pairs.answer, pairs.wrong)
        for site in ("resid_pre", "head_out", "head_pattern", "mlp_out"):
            result = sweep(toy_model, same, site, direction="noising")
            assert torch.allclose(result.values, torch.tensor(result.clean), atol=1e-4), site

    def test_patching_all_of_resid_pre_at_layer_0_gives_the_clean_metric(self, toy_model):
        pairs = ioi_pairs(toy_model.tokenizer, 4, seed=3)
        patched = run_patched(toy_model, pairs, [Patch("blocks.0.hook_resid_pre")]).mean().item()
        clean = sweep(toy_model, pairs, "head_out").clean
        assert patched == pytest.approx(clean, abs=1e-4)

    def test_last_position_resid_pre_at_layer_0_alone_is_not_everything(self, toy_model):
        pairs = ioi_pairs(toy_model.tokenizer, 4, seed=3)
        result = sweep(toy_model, pairs, "resid_pre")
        assert result.values[0, -1] < result.clean - 1  # the answer is not in the final token alone

    @pytest.mark.parametrize("site", ["head_out_by_pos", "attn_out", "head_v"])
    def test_chunked_equals_unchunked(self, toy_model, site):
        pairs = ioi_pairs(toy_model.tokenizer, 3, seed=4)
        one_at_a_time = sweep(toy_model, pairs, site, memory_budget=1)  # every chunk holds one variant
        batched = sweep(toy_model, pairs, site)
        assert torch.allclose(one_at_a_time.values, batched.values, atol=1e-5)

    def test_batched_equals_a_per_index_loop(self, toy_model):
        pairs = ioi_pairs(toy_model.tokenizer, 3, seed=5)
        result = sweep(toy_model, pairs, "head_out_by_pos", reduce="none")
        for layer, head, pos in [(0, 1, 3), (2, 2, 7), (3, 0, 13), (1, 3, 0)]:
            patch = Patch(f"blocks.{layer}.attn.hook_z", positions=[pos], heads=[head])
            expected = run_patched(toy_model, pairs, [patch])
            assert torch.allclose(result.values[layer, head, pos], expected, atol=1e-4)

    def test_noising_is_the_mirror_of_denoising(self, toy_model):
        pairs = ioi_pairs(toy_model.tokenizer, 3, seed=6)
        denoise = sweep(toy_model, pairs, "head_out")
        noise = sweep(toy_model, pairs, "head_out", direction="noising")
        assert noise.clean == pytest.approx(denoise.clean) and noise.corrupted == pytest.approx(
            denoise.corrupted
        )
        mirrored = PromptPairs(
            pairs.corrupted_tokens, pairs.clean_tokens, pairs.lengths, pairs.answer, pairs.wrong
        )
        assert torch.allclose(sweep(toy_model, mirrored, "head_out").values, noise.values, atol=1e-5)

    def test_normalised_score_is_zero_where_nothing_differs(self, toy_model):
        pairs = ioi_pairs(toy_model.tokenizer, 3, seed=7)
        normalised = sweep(toy_model, pairs, "resid_pre").normalised()
        differs = (pairs.clean_tokens != pairs.corrupted_tokens).any(0)  # only the repeated name's position
        assert differs.sum() == 1
        # at layer 0 the residual stream is the token embedding: equal tokens, nothing to patch
        assert torch.allclose(normalised[0, ~differs], torch.zeros(int((~differs).sum())), atol=1e-5)
        assert normalised[0, differs].item() > 0.5  # the changed token carries the behaviour


class TestMixedLengthsAndErrors:
    def test_head_sweep_over_mixed_lengths_equals_per_group_sweeps(self, toy_model):
        pairs = ioi_pairs(toy_model.tokenizer, 6, seed=8, templates=TRAIN_TEMPLATES[:40])
        assert not pairs.same_length
        result = sweep(toy_model, pairs, "head_out", reduce="none")
        for index in pairs.length_groups():
            alone = sweep(toy_model, pairs.select(index), "head_out", reduce="none")
            assert torch.allclose(result.values[..., index], alone.values, atol=1e-5)

    def test_position_sweep_over_mixed_lengths_is_refused(self, toy_model):
        pairs = ioi_pairs(toy_model.tokenizer, 6, seed=8, templates=TRAIN_TEMPLATES[:40])
        with pytest.raises(PromptError, match="same token length"):
            sweep(toy_model, pairs, "resid_pre")

    def test_unknown_site(self, toy_model):
        # ValueError at run time; the test-time jaxtyping checker rejects the Literal first
        with pytest.raises((ValueError, TypeError), match="resid_mid"):
            sweep(toy_model, ioi_pairs(toy_model.tokenizer, 1), "resid_mid")

    def test_hooks_attached_are_refused_not_ignored(self, toy_model):
        pairs = ioi_pairs(toy_model.tokenizer, 1)
        with toy_model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda t, hook: t)]):
            with pytest.raises(RuntimeError, match="hooks attached"):
                sweep(toy_model, pairs, "head_out")
        assert active_hook_count(toy_model) == 0


class RaisingMetric(Metric):
    def __call__(self, final_logits, index):
        raise RuntimeError("metric failed")


def test_hooks_removed_when_the_metric_raises(toy_model):
    pairs = ioi_pairs(toy_model.tokenizer, 2)
    metric = RaisingMetric("logit_diff", pairs.answer, pairs.wrong)
    with pytest.raises(RuntimeError, match="metric failed"):
        run_patched(toy_model, pairs, [Patch("blocks.1.attn.hook_z", heads=[0])], metric=metric)
    assert active_hook_count(toy_model) == 0
    with pytest.raises(RuntimeError, match="metric failed"):
        sweep(toy_model, pairs, "head_out", metric=metric)
    assert active_hook_count(toy_model) == 0
