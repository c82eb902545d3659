"""A transcoder latent's input directions through attention heads' OV circuits, by construction: in
the toy, head 1 of layer 0 is rewritten so that its value reads one token's LayerNorm-normalised
embedding and its output writes the latent's encoder direction; that token tops the list for that
head, with the score the construction gives, and the card shows it."""

from __future__ import annotations

import pytest
import torch

from interp.base.errors import InputError
from interp.dictionaries import make_dictionary
from interp.dictionaries.cards import FeatureCard, feature_cards, input_directions

HEAD, GAIN = 1, 10.0


@pytest.fixture(scope="module")
def planted():
    """(model, transcoder, the token's id, the expected score): latent 0 of a transcoder at block 1
    reads direction e = (e_7 - e_8) / sqrt 2; head L0H1's OV maps the normalised embedding of " Mary"
    (made 5x larger, so it is the token best aligned with itself) to GAIN * e."""
    from interp.model.loading import load_model

    model = load_model("toy")
    hf = model.original_model
    attn = hf.model.layers[0].self_attn
    d_head = attn.head_dim
    token = model.tokenizer(" Mary", add_special_tokens=False)["input_ids"][0]
    e = torch.zeros(hf.config.hidden_size)
    e[7], e[8] = 2**-0.5, -(2**-0.5)
    with torch.no_grad():
        hf.model.embed_tokens.weight[token] *= 5.0
        x = hf.model.embed_tokens.weight[token]
        c = (x - x.mean()) * hf.model.layers[0].input_layernorm.weight  # the LayerNorm's linear part
        rows = slice(HEAD * d_head, (HEAD + 1) * d_head)
        attn.v_proj.weight[rows] = 0.0
        attn.v_proj.weight[HEAD * d_head] = c / c.norm()
        attn.dense.weight[:, rows] = 0.0
        attn.dense.weight[:, HEAD * d_head] = GAIN * e
    tc = make_dictionary(
        "relu",
        d_in=hf.config.hidden_size,
        d_sae=2,
        hook_name="blocks.1.ln1.hook_normalized",
        kind="transcoder",
        hook_name_out="blocks.1.hook_mlp_out",
    )
    with torch.no_grad():
        tc.W_enc.zero_()
        tc.W_enc[:, 0] = e  # centred already: the reading through ln1.hook_normalized is e itself
        tc.W_enc[3, 1] = 1.0
    return model, tc, token, float(c.norm()) * GAIN


def test_the_planted_token_tops_the_list_for_the_planted_head(planted):
    model, tc, token, score = planted
    (entry,) = input_directions(model, tc, [0], k=5)
    name = model.tokenizer.decode([token])
    mine = [(t, v) for h, t, v in entry["heads"] if h == f"L0H{HEAD}"]
    assert mine and mine[0][0] == name
    assert mine[0][1] == pytest.approx(score, rel=1e-4)
    assert entry["heads"][0] == (f"L0H{HEAD}", name, pytest.approx(score, rel=1e-4))
    (other,) = input_directions(model, tc, [1], k=5)  # a latent the planted head does not write
    assert all(h != f"L0H{HEAD}" or v < 1e-4 * score for h, _, v in other["heads"])


def test_only_heads_that_write_before_the_read(planted):
    model, tc, _, _ = planted
    (entry,) = input_directions(model, tc, [0], k=50, head_layers=[0, 1])
    assert {h[:2] for h, _, _ in entry["heads"]} == {"L0"}  # layer 1's heads write after block 1 reads
    early = make_dictionary(
        "relu",
        d_in=tc.d_in,
        d_sae=2,
        hook_name="blocks.0.ln1.hook_normalized",
        kind="transcoder",
        hook_name_out="blocks.0.hook_mlp_out",
    )
    assert input_directions(model, early, [0])[0]["heads"] == []
    assert input_directions(model, tc, [0], head_layers=[])[0]["heads"] == []
    with pytest.raises(InputError, match="head_layers"):
        input_directions(model, tc, [0], head_layers=[7])


def test_the_card_shows_it_and_round_trips(planted):
    model, tc, token, score = planted
    tokens = torch.tensor([[token, 3, 4, token, 5]])
    (card,) = feature_cards(model, tc, tokens, features=[0], n_tokens=4)
    name = model.tokenizer.decode([token])
    assert card.input_heads[0] == (f"L0H{HEAD}", name, pytest.approx(score, rel=1e-4))
    assert FeatureCard.from_dict(card.to_dict()) == card
    assert name in card.tokens()


def test_feature_cards_pass_head_layers_through(planted):
    """head_layers=[] leaves the planted head off the card; a layer outside the model is refused before
    the corpus pass (not turned into a note on the card)."""
    model, tc, token, _ = planted
    tokens = torch.tensor([[token, 3, 4, token, 5]])
    (card,) = feature_cards(model, tc, tokens, features=[0], n_tokens=4, head_layers=[])
    assert not card.input_heads
    with pytest.raises(
        InputError, match=r"head_layers=\[9\] is not allowed; use a list of layers of the model \(0..3\)"
    ):
        feature_cards(model, tc, tokens, features=[0], head_layers=[9])
