"""Ground truth on the toy model: a TopK SAE trained on its middle residual stream (seeded, seconds on a
CPU) has features whose cards show the toy's concepts (interp/toy/README.md: IOI sentences
"When Mary and John went to ...", name sentences, induction sequences, docstrings), read off their
top activations: one whose top contexts all peak on a name token, and a previous-token pattern, one
whose top contexts all peak on " and" right after a name (the IOI opening "When {A} and {B}").

Measured (seed 0; 25.6k training tokens, 640 latents, k = 16; 5153 held-out tokens): 2 latents peak on
a name in all 10 top contexts, 9 in at least 9; several peak on " and" after a name in all 10."""

from __future__ import annotations

import pytest

from dictionaries.conftest import toy_corpus
from interp.dictionaries import make_dictionary, train_from_model
from interp.dictionaries.cards import feature_cards
from interp.toy.vocab import HELD_OUT_NAMES, TRAIN_NAMES

NAMES = {f" {name}" for name in TRAIN_NAMES + HELD_OUT_NAMES}


def peaks(card):
    return [
        (c.tokens[c.max_index - 1] if c.max_index else None, c.tokens[c.max_index]) for c in card.contexts
    ]


@pytest.mark.slow
def test_a_trained_sae_has_cards_of_toy_concepts(toy_model):
    train, held_out = toy_corpus(20, rows=64, seed=0), toy_corpus(4, rows=64, seed=99)
    sae = make_dictionary("topk", d_in=160, d_sae=640, k=16, hook_name="blocks.2.hook_resid_pre")
    n_tokens = sum(int(mask.sum()) for _, mask in train)
    train_from_model(toy_model, train, [sae], batch_tokens=1024, buffer_tokens=16384, n_tokens=n_tokens)
    cards = feature_cards(toy_model, sae, held_out, n_contexts=10, context_before=8, context_after=2)
    full = [card for card in cards if len(card.contexts) == 10]
    assert len(full) > 100  # most latents fire on at least 10 held-out prompts
    names = [card for card in full if all(token in NAMES for _, token in peaks(card))]
    name_and = [
        card for card in full if all(prev in NAMES and token == " and" for prev, token in peaks(card))
    ]
    assert names, "no latent's top contexts all peak on a name"
    assert name_and, "no latent's top contexts all peak on ' and' after a name"
    for card in names + name_and:  # what the card shows is what the latent does there
        assert card.max_act == pytest.approx(card.contexts[0].max_value, rel=1e-5)
        assert [c.max_value for c in card.contexts] == sorted(
            (c.max_value for c in card.contexts), reverse=True
        )
        assert 0 < card.density < 0.2 and card.promoted is not None and len(card.promoted) == 10
