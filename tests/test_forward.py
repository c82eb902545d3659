"""The functional Phi forward (interp.engine.forward) equals the bridge, raw and folded, and resumes exactly."""

from __future__ import annotations

import pytest
import torch
from closeness import assert_close
from helpers import TOKENS

from interp.engine.forward import (
    PhiWeights,
    block,
    forward_logits,
    run_final_logits,
    run_with_cache,
    unembed,
)
from interp.model.loading import load_model


@pytest.fixture(scope="module", params=["tiny-raw", "tiny-folded", "toy"])
def model(request, tiny_phi_dir):
    if request.param == "toy":
        return load_model("toy")
    return load_model(tiny_phi_dir, weights=request.param.split("-")[1])


@pytest.fixture(scope="module")
def tokens(model):
    return TOKENS % model.cfg.d_vocab


class TestEqualsTheBridge:
    def test_logits(self, model, tokens):
        with torch.no_grad():
            expected = model(tokens)
        actual = forward_logits(PhiWeights.from_model(model), tokens)
        assert_close(actual, expected)

    def test_cached_activations(self, model, tokens):
        run = run_with_cache(PhiWeights.from_model(model), tokens)
        names = {
            "resid_pre": "blocks.{}.hook_resid_pre",
            "z": "blocks.{}.attn.hook_z",
            "pattern": "blocks.{}.attn.hook_pattern",
            "attn_out": "blocks.{}.hook_attn_out",
            "mlp_out": "blocks.{}.hook_mlp_out",
        }
        _, cache = model.run_with_cache(tokens)
        for layer in range(model.cfg.n_layers):
            for field, hook in names.items():
                ours, theirs = getattr(run, field)[layer], cache[hook.format(layer)]
                assert_close(ours, theirs, what=(field, layer))

    def test_final_logits_only(self, model, tokens):
        w = PhiWeights.from_model(model)
        assert_close(run_final_logits(w, tokens), forward_logits(w, tokens)[:, -1], rel=1e-6)
        assert_close(run_with_cache(w, tokens).final_logits, forward_logits(w, tokens)[:, -1], rel=1e-6)


class TestResumes:
    """What the patch engine relies on: a block run from (layer, start) with the base run's keys and
    values for earlier positions equals the same block in the full run."""

    @pytest.mark.parametrize("start", [0, 3, 13])
    def test_block_from_a_position_with_the_prefix(self, model, tokens, start):
        w = PhiWeights.from_model(model)
        run = run_with_cache(w, tokens)
        for layer in range(w.n_layers):
            out = block(
                w,
                layer,
                run.resid_pre[layer][:, start:],
                start,
                run.k[layer][:, :, :start],
                run.v[layer][:, :, :start],
            )
            following = run.resid_pre[layer + 1] if layer + 1 < w.n_layers else run.resid_final
            assert_close(out.resid_post, following[:, start:])

    def test_query_from_the_final_position_only(self, model, tokens):
        w = PhiWeights.from_model(model)
        run = run_with_cache(w, tokens)
        last = w.n_layers - 1
        out = block(w, last, run.resid_pre[last], 0, query_from=tokens.shape[1] - 1)
        assert out.resid_post.shape[1] == 1
        assert_close(unembed(w, out.resid_post[:, -1]), run.final_logits)


def test_a_run_with_grad_is_a_graph_from_the_embedding(tiny_phi_dir):
    w = PhiWeights.from_model(load_model(tiny_phi_dir))
    run = run_with_cache(w, TOKENS, grad=True)
    (grad,) = torch.autograd.grad(run.final_logits[:, 3].sum(), run.resid_pre[0])
    assert grad.shape == run.resid_pre[0].shape and grad[:, -1].abs().sum() > 0
    assert not run_with_cache(w, TOKENS).final_logits.requires_grad
