"""The contrastive core (interp.methods.contrastive): the one place that picks base and source runs."""

from __future__ import annotations

import pytest
import torch
from helpers import ioi_pairs

from interp.data.prompts import PromptError, PromptPairs
from interp.methods.contrastive import base_and_source, clean_and_corrupted, contrast
from interp.toy.vocab import TRAIN_TEMPLATES


@pytest.fixture(scope="module")
def mixed(toy_model):
    pairs = ioi_pairs(toy_model.tokenizer, 7, seed=8, templates=TRAIN_TEMPLATES[:40])
    assert not pairs.same_length
    return pairs


def bridge_final_logits(model, tokens, pairs):
    with torch.no_grad():
        return pairs.at_final(model(tokens)).float()


class TestDirection:
    def test_denoising_intervenes_on_the_corrupted_run(self, toy_model, mixed):
        core = contrast(toy_model, mixed, direction="denoising")
        for group in core.groups:
            assert core.base(group) is group.corrupted and core.source(group) is group.clean
        assert torch.equal(core.base_values, core.corrupted_values)

    def test_noising_intervenes_on_the_clean_run(self, toy_model, mixed):
        core = contrast(toy_model, mixed, direction="noising")
        for group in core.groups:
            assert core.base(group) is group.clean and core.source(group) is group.corrupted
        assert torch.equal(core.base_values, core.clean_values)

    def test_base_and_source_of_anything(self):
        assert base_and_source("c", "x", "denoising") == ("x", "c")
        assert base_and_source("c", "x", "noising") == ("c", "x")
        for direction in ("denoising", "noising"):
            assert clean_and_corrupted(*base_and_source("c", "x", direction), direction) == ("c", "x")
        with pytest.raises(
            (ValueError, TypeError), match="denoising.*noising"
        ):  # TypeError: beartype in tests
            base_and_source("c", "x", "sideways")


class TestBaselines:
    def test_equal_the_bridge_on_mixed_lengths(self, toy_model, mixed):
        """An independent path: the bridge's own forward, each prompt read at its own final position."""
        core = contrast(toy_model, mixed)
        clean = bridge_final_logits(toy_model, mixed.clean_tokens, mixed)
        corrupted = bridge_final_logits(toy_model, mixed.corrupted_tokens, mixed)
        assert (core.clean_logits - clean).abs().max() <= 1e-4
        assert (core.corrupted_logits - corrupted).abs().max() <= 1e-4
        rows = torch.arange(len(mixed))
        expected = clean[rows, mixed.answer] - clean[rows, mixed.wrong]
        assert (core.clean_values - expected).abs().max() <= 1e-4
        assert core.clean_value == pytest.approx(expected.mean().item(), abs=1e-4)

    def test_every_prompt_in_exactly_one_group(self, toy_model, mixed):
        core = contrast(toy_model, mixed)
        seen = torch.cat([g.index for g in core.groups]).sort().values
        assert torch.equal(seen, torch.arange(len(mixed)))

    def test_logits_only_gives_the_same_baselines(self, toy_model, mixed):
        full, light = contrast(toy_model, mixed), contrast(toy_model, mixed, keep="logits")
        assert all(g.clean is None for g in light.groups)
        assert (full.clean_logits - light.clean_logits).abs().max() <= 1e-4
        assert (full.corrupted_logits - light.corrupted_logits).abs().max() <= 1e-4

    def test_kl_metric_is_resolved_against_the_clean_run(self, toy_model, mixed):
        core = contrast(toy_model, mixed, "kl")
        assert core.clean_values.abs().max() <= 1e-5 and (core.corrupted_values > 0).all()


def test_grad_base_builds_a_graph_for_the_base_run_only(toy_model, mixed):
    core = contrast(toy_model, mixed, direction="noising", grad_base=True)
    group = core.groups[0]
    assert group.clean.resid_pre[0].requires_grad and group.clean.final_logits.requires_grad
    assert not group.corrupted.final_logits.requires_grad


class TestRefusals:
    def test_user_hooks(self, toy_model, mixed):
        with toy_model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: x)]):
            with pytest.raises(RuntimeError, match="1 hooks attached"):
                contrast(toy_model, mixed)

    def test_token_ids_outside_the_vocabulary(self, toy_model):
        tokens = torch.tensor([[3, 4, 999]])
        pairs = PromptPairs(tokens, tokens, torch.tensor([3]), torch.tensor([5]), torch.tensor([6]))
        with pytest.raises(PromptError, match="outside the model's vocabulary 0..383"):
            contrast(toy_model, pairs)

    def test_lengths_past_the_padded_width(self, toy_model):
        tokens = torch.tensor([[3, 4, 5]])
        pairs = PromptPairs(tokens, tokens, torch.tensor([5]), torch.tensor([5]), torch.tensor([6]))
        with pytest.raises(PromptError, match="lengths must be between 1 and the padded width 3"):
            contrast(toy_model, pairs)

    def test_prompts_longer_than_the_context(self, toy_model):
        n_ctx = toy_model.cfg.n_ctx
        tokens = torch.full((1, n_ctx + 1), 5)
        pairs = PromptPairs(tokens, tokens, torch.tensor([n_ctx + 1]), torch.tensor([5]), torch.tensor([6]))
        with pytest.raises(PromptError, match=f"more than the model's context of {n_ctx} tokens"):
            contrast(toy_model, pairs)
