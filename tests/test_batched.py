"""The batched patch engine (interp.engine.batched): exact for every entry layer and start position."""

from __future__ import annotations

import pytest
import torch
from closeness import assert_close

from interp.engine.batched import Variant, run_variants
from interp.engine.forward import PhiWeights, run_with_cache, unembed
from interp.model.loading import load_model

TOKENS = torch.tensor([[5, 9, 14, 3, 22, 7, 30, 11], [40, 2, 17, 8, 19, 12, 6, 25]])


@pytest.fixture(scope="module")
def setup():
    model = load_model("toy")
    w = PhiWeights.from_model(model)
    return w, run_with_cache(w, TOKENS), run_with_cache(w, torch.flip(TOKENS, [1]))


def unchanged(resid: torch.Tensor) -> torch.Tensor:
    return resid.clone()


def test_unchanged_variants_give_the_base_logits_from_any_entry_and_start(setup):
    w, base, _ = setup
    variants = [
        Variant((layer, start), layer, start, unchanged)
        for layer in range(w.n_layers + 1)
        for start in range(TOKENS.shape[1])
    ]
    for key, logits in run_variants(w, base, variants, memory_budget=2**30).items():
        assert_close(logits, base.final_logits, what=key)


def test_a_variant_equals_a_full_rerun_with_that_residual(setup):
    """Independent reference: replace resid_pre[layer][:, pos] and recompute every block in full."""
    w, base, source = setup
    from interp.engine.forward import block

    for layer, pos in [(0, 0), (1, 4), (3, 7)]:

        def make(resid, layer=layer, pos=pos):  # resid [batch, pos - start, d_model]
            out = resid.clone()
            out[:, 0] = source.resid_pre[layer][:, pos]
            return out

        (logits,) = run_variants(w, base, [Variant((0,), layer, pos, make)], memory_budget=2**30).values()
        x = base.resid_pre[layer].clone()
        x[:, pos] = source.resid_pre[layer][:, pos]
        for later in range(layer, w.n_layers):
            x = block(w, later, x, 0).resid_post
        assert_close(logits, unembed(w, x[:, -1]))


def test_chunking_to_a_tiny_budget_changes_nothing(setup):
    w, base, source = setup

    def variants():
        return [
            Variant(
                (layer, pos), layer, pos, lambda r, layer=layer, pos=pos: r + 0.1 * (layer + 1) * (pos + 1)
            )
            for layer in range(w.n_layers)
            for pos in range(0, TOKENS.shape[1], 3)
        ]

    big = run_variants(w, base, variants(), memory_budget=2**30)
    small = run_variants(w, base, variants(), memory_budget=1)  # one variant per chunk
    assert big.keys() == small.keys()
    for key in big:
        assert_close(big[key], small[key])  # logits ~10: float32 batching order


def test_entering_at_the_unembedding(setup):
    w, base, _ = setup
    delta = torch.randn(w.W_E.shape[1])

    def make(resid):
        out = resid.clone()
        out[:, -1] += delta
        return out

    (logits,) = run_variants(w, base, [Variant((0,), w.n_layers, 0, make)], memory_budget=2**30).values()
    assert_close(logits, unembed(w, base.resid_final[:, -1] + delta))
