"""Feature cards on a model and dictionaries built by construction, where the top contexts, the
promoted and suppressed tokens and the input tokens are known exactly; the logit-lens reading equals
the folded model's `W_dec @ W_U`."""

from __future__ import annotations

import pytest
import torch

from interp.base.errors import InputError
from interp.dictionaries import make_dictionary
from interp.dictionaries.cards import (
    FeatureCard,
    feature_cards,
    input_directions,
    logit_effects,
    residual_reading,
)

MARK, SILENT = 5, 6  # residual dims: the embedding's "marker" dim, and one no token writes


@pytest.fixture(scope="module")
def built():
    """The toy, changed by construction: on residual dim 5 only " Mary" (3), " John" (2) and " park" (1)
    have an embedding component; the unembedding reads dims 0 and 1 only from " cat" (dim 0) and
    " dog" (dim 1); the final LayerNorm weighs dim 0 by 2 and dim 1 by 1."""
    from interp.model.loading import load_model

    model = load_model("toy")
    tok = model.tokenizer
    ids = {
        w: tok(f" {w}", add_special_tokens=False)["input_ids"][0]
        for w in ("Mary", "John", "park", "cat", "dog")
    }
    hf = model.original_model
    with torch.no_grad():
        embed = hf.model.embed_tokens.weight
        embed[:, [MARK, SILENT]] = 0.0
        for word, value in (("Mary", 3.0), ("John", 2.0), ("park", 1.0)):
            embed[ids[word], MARK] = value
        unembed = hf.lm_head.weight  # [d_vocab, d_model]
        unembed[:, :2] = 0.0
        unembed[ids["cat"], 0] = 1.0
        unembed[ids["dog"], 1] = 1.0
        hf.model.final_layernorm.weight[:2] = torch.tensor([2.0, 1.0])
    return model, ids


def marker_sae(hook="hook_embed", kind="sae", **extra):
    """Latent 0 reads dim 5 (fires 3 / 2 / 1 on Mary / John / park), latent 1 reads dim 6 (never
    fires); latent 0's decoder row is e_0 - e_1."""
    d = make_dictionary("relu", d_in=160, d_sae=2, hook_name=hook, kind=kind, **extra)
    with torch.no_grad():
        d.W_enc.zero_()
        d.W_enc[MARK, 0] = 1.0
        d.W_enc[SILENT, 1] = 1.0
        d.W_dec.zero_()
        d.W_dec[0, 0], d.W_dec[0, 1] = 1.0, -1.0
        d.W_dec[1, 2] = 1.0
    return d


def corpus(model):
    rows = ["the cat John went", "Mary went to", "park and then the dog", "the cat", "John Mary John"]
    tok = model.tokenizer
    encoded = [tok(" " + row, add_special_tokens=False)["input_ids"] for row in rows]
    width = max(map(len, encoded))
    tokens = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for r, ids in enumerate(encoded):
        tokens[r, : len(ids)] = torch.tensor(ids)
        mask[r, : len(ids)] = True
    return [(tokens[:2], mask[:2]), (tokens[2:], mask[2:])]  # two batches: the top-k merge runs


class TestByConstruction:
    def test_contexts_in_order_with_every_tokens_activation(self, built):
        model, _ = built
        cards = feature_cards(
            model, marker_sae(), corpus(model), n_contexts=3, context_before=2, context_after=1, label="m"
        )
        card, dead = cards
        assert card.title == "m #0" and card.n_tokens == 4 + 3 + 5 + 2 + 3
        # rows by their largest activation: Mary (3) in rows 1 and 4 (the earlier first), then John (2)
        assert [c.row for c in card.contexts] == [1, 4, 0]
        assert card.contexts[0].tokens == [" Mary", " went"] and card.contexts[0].values == [3.0, 0.0]
        assert card.contexts[1].tokens == [" John", " Mary", " John"]
        assert card.contexts[1].values == [2.0, 3.0, 2.0] and card.contexts[1].max_index == 1
        assert card.contexts[2].tokens == [" the", " cat", " John", " went"]
        assert card.contexts[2].values == [0.0, 0.0, 2.0, 0.0] and card.contexts[2].max_value == 2.0
        assert card.density == pytest.approx(6 / 17) and card.max_act == 3.0
        assert card.mean_act == pytest.approx((3 * 2 + 2 * 3 + 1) / 17)
        assert card.mean_active == pytest.approx(13 / 6)
        # histogram on (0, 4]: one activation of 1, three of 2, two of 3
        assert sum(card.histogram_counts) == 6 and card.histogram_edges[-1] <= 4.0
        bins = torch.bucketize(torch.tensor([1.0, 2.0, 3.0]), torch.tensor(card.histogram_edges[1:]))
        assert [card.histogram_counts[int(b)] for b in bins] == [1, 3, 2]
        assert dead.density == 0.0 and dead.contexts == [] and dead.histogram_counts == []

    def test_promoted_and_suppressed_tokens(self, built):
        model, _ = built
        card = feature_cards(model, marker_sae(), corpus(model), features=[0])[0]
        shift = (2.0 - 1.0) / model.cfg.d_vocab  # centred over the vocabulary
        assert card.promoted[0] == (" cat", pytest.approx(2.0 - shift))
        assert card.suppressed[0] == (" dog", pytest.approx(-1.0 - shift))
        assert all(v == pytest.approx(-shift, abs=1e-6) for _, v in card.promoted[1:])
        assert sum(card.logit_counts) == len(model.tokenizer) - len(model.tokenizer.all_special_ids)

    def test_input_tokens_and_upstream_latents_of_a_transcoder(self, built):
        model, _ = built
        tc = marker_sae("blocks.0.hook_resid_pre", kind="transcoder", hook_name_out="blocks.0.hook_mlp_out")
        up = make_dictionary("relu", d_in=160, d_sae=3, hook_name="hook_embed")
        with torch.no_grad():
            up.W_dec.zero_()
            up.W_dec[2, MARK] = 4.0  # upstream latent 2 writes the marker dim
            up.W_dec[0, MARK] = -1.0
        card = feature_cards(model, tc, corpus(model), features=[0], n_tokens=3, upstream={"emb": up})[0]
        assert card.input_tokens == [(" Mary", 3.0), (" John", 2.0), (" park", 1.0)]
        assert card.upstream[0] == ("emb", 2, 4.0) and card.upstream[-1] == ("emb", 0, -1.0)
        assert card.contexts[0].tokens[card.contexts[0].max_index] == " Mary"

    def test_a_card_round_trips_through_json(self, built):
        import json

        model, _ = built
        tc = marker_sae("blocks.0.hook_resid_pre", kind="transcoder", hook_name_out="blocks.0.hook_mlp_out")
        card = feature_cards(model, tc, corpus(model), features=[0])[0]
        again = FeatureCard.from_dict(json.loads(json.dumps(card.to_dict())))
        assert again == card and " Mary" in again.tokens() and " cat" in again.tokens()


class TestTheLogitLensConvention:
    def test_equals_the_folded_models_unembedding(self, toy_model):
        """Independent path: TransformerLens's processing (interp.model.folding) folds ln_final into
        W_U and centres it; a direction's logits there are W_dec @ W_U."""
        from interp.engine.weights import PhiWeights
        from interp.model.loading import load_model

        folded = load_model("toy", weights="folded")
        sae = make_dictionary("topk", d_in=160, d_sae=8, k=2, hook_name="blocks.2.hook_resid_pre", seed=3)
        with torch.no_grad():
            sae.W_dec.add_(torch.randn(8, 1))  # a mean component the LayerNorm removes
        effects = logit_effects(toy_model, sae, [1, 4, 6])
        W_U = PhiWeights.from_model(folded).W_U.float()
        expected = (sae.W_dec[[1, 4, 6]] @ W_U.T).detach()
        torch.testing.assert_close(effects, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
        again = logit_effects(folded, sae, [1, 4, 6])  # already folded: the same reading
        torch.testing.assert_close(again, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))

    def test_refused_where_the_decoder_does_not_write_the_residual_stream(self, toy_model):
        sae = make_dictionary("topk", d_in=640, d_sae=8, k=2, hook_name="blocks.1.mlp.hook_post")
        with pytest.raises(InputError, match="not the residual stream"):
            logit_effects(toy_model, sae, [0])
        with pytest.raises(InputError, match="not read from the residual stream"):
            residual_reading(toy_model, sae, [0])


def test_the_reading_through_the_block_layernorm(toy_model):
    """For ln1.hook_out, the encoder's pre-activation is linear in the residual stream up to the
    LayerNorm's scale: (LN(x) - b) . v = (x . r) / std(x)."""
    from interp.engine.weights import PhiWeights

    tc = make_dictionary(
        "topk", d_in=160, d_sae=4, k=1, kind="transcoder", hook_name="blocks.1.ln1.hook_out",
        hook_name_out="blocks.1.hook_mlp_out", seed=2,
    )  # fmt: skip
    w = PhiWeights.from_model(toy_model)
    x = torch.randn(5, 160) + 0.3
    ln = torch.nn.functional.layer_norm(x, (160,), w.ln_w[1].float(), w.ln_b[1].float(), w.eps)
    v = tc.W_enc[:, [2]].detach()
    lhs = (ln - w.ln_b[1].float()) @ v
    std = (x.var(-1, unbiased=False, keepdim=True) + w.eps).sqrt()
    rhs = x @ residual_reading(toy_model, tc, [2]).T / std
    torch.testing.assert_close(lhs, rhs, rtol=1e-4, atol=1e-5)
    normalized = make_dictionary(
        "topk", d_in=160, d_sae=4, k=1, kind="transcoder", hook_name="blocks.1.ln1.hook_normalized",
        hook_name_out="blocks.1.hook_mlp_out", seed=2,
    )  # fmt: skip
    lhs = ((x - x.mean(-1, keepdim=True)) / std) @ normalized.W_enc[:, [2]].detach()
    rhs = x @ residual_reading(toy_model, normalized, [2]).T / std
    torch.testing.assert_close(lhs, rhs, rtol=1e-4, atol=1e-5)


class TestRefusals:
    def test_upstream_must_come_earlier(self, toy_model):
        tc = make_dictionary(
            "topk", d_in=160, d_sae=4, k=1, kind="transcoder", hook_name="blocks.1.ln1.hook_out",
            hook_name_out="blocks.1.hook_mlp_out",
        )  # fmt: skip
        later = make_dictionary("topk", d_in=160, d_sae=4, k=1, hook_name="blocks.2.hook_resid_pre")
        with pytest.raises(InputError, match="upstream dictionary 'late' writes 'blocks.2.hook_resid_pre'"):
            input_directions(toy_model, tc, [0], {"late": later})
        earlier = make_dictionary("topk", d_in=160, d_sae=4, k=1, hook_name="blocks.1.hook_resid_pre")
        assert len(input_directions(toy_model, tc, [0], {"early": earlier}, k=2)[0]["upstream"]) == 2

    def test_options(self, toy_model):
        sae = make_dictionary("topk", d_in=160, d_sae=4, k=1, hook_name="blocks.1.hook_resid_pre")
        tokens = torch.zeros(1, 3, dtype=torch.long)
        with pytest.raises(InputError, match="top_n=0 is not allowed"):
            feature_cards(toy_model, sae, tokens, top_n=0)
        with pytest.raises(InputError, match="n_tokens=0 is not allowed"):
            feature_cards(toy_model, sae, tokens, n_tokens=0)
        with pytest.raises(InputError, match="by='l1' is not allowed"):
            feature_cards(toy_model, sae, tokens, top_n=2, by="l1")


def test_the_browser_widget_carries_every_card(built):
    from interp.viz.features import NOT_DISPLAYED, FeatureBrowser

    model, _ = built
    cards = feature_cards(model, marker_sae(), corpus(model), label="m")
    browser = FeatureBrowser(cards, "m", sort="max_act")
    widget = browser.widget()
    assert widget.data["cards"] == [c.to_dict() for c in cards] and widget.data["sort"] == "max_act"
    assert widget.data["start"] == 0  # the densest latent is selected first
    bundle = browser._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert data["text/plain"] == NOT_DISPLAYED and "application/vnd.jupyter.widget-view+json" in data
    with pytest.raises(ValueError, match="sort='l0' is not allowed"):
        FeatureBrowser(cards, sort="l0")
