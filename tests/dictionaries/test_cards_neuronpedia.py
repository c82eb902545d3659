"""Neuronpedia's feature JSON (the batch layout SAEDashboard's NeuronpediaConverter writes and
Neuronpedia imports): a file in that layout reads into cards field by field, and cards written and read
back are the same cards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interp.base.errors import InputError
from interp.dictionaries.cards import Context, FeatureCard
from interp.dictionaries.neuronpedia import (
    from_neuronpedia,
    read_neuronpedia,
    to_neuronpedia,
    write_neuronpedia,
)

BATCH = Path(__file__).parent / "data" / "neuronpedia_batch.json"


def test_a_file_in_the_layout_reads_field_by_field():
    cards = read_neuronpedia(BATCH)
    assert [c.feature for c in cards] == [17, 18] and cards[0].dictionary == "phi-2/2-res-topk"
    card = cards[0]
    assert card.density == 0.0125 and card.max_act == 1.875
    assert card.promoted == [(" Mary", 2.75), (" Anna", 1.5), (" Kate", 1.125)]
    assert card.suppressed[0] == (" dog", -0.912)
    assert card.histogram_counts == [4, 2, 0, 1] and card.histogram_edges == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert card.logit_edges == [-1.0, 0.0, 1.0, 2.0]
    assert [c.max_index for c in card.contexts] == [1, 2, 1]
    assert card.contexts[0].tokens[1] == " Mary" and card.contexts[1].values == [0.0, 0.0, 1.25, 0.125]
    assert card.mean_act is None and card.n_tokens is None
    empty = cards[1]
    assert empty.contexts == [] and empty.promoted is None and empty.histogram_edges == []


def test_written_in_the_layout_with_its_field_names(tmp_path):
    original = json.loads(BATCH.read_text())
    cards = read_neuronpedia(BATCH)
    path = write_neuronpedia(cards, tmp_path / "batch-0.json", model_id="phi-2", layer=2, sae_set="res-topk")
    written = json.loads(path.read_text())
    assert set(written) == set(original)
    for ours, theirs in zip(written["features"], original["features"], strict=True):
        assert set(ours) == set(theirs)  # every field of the layout, none of our own
        for name in ("feature_index", "pos_str", "pos_values", "neg_str", "neg_values", "frac_nonzero",
                     "freq_hist_data_bar_heights", "logits_hist_data_bar_heights"):  # fmt: skip
            assert ours[name] == theirs[name], name
        assert ours["freq_hist_data_bar_values"] == pytest.approx(theirs["freq_hist_data_bar_values"])
        for a, b in zip(ours["activations"], theirs["activations"], strict=True):
            assert a["tokens"] == b["tokens"] and a["values"] == b["values"]
            assert a["qualifying_token_index"] == b["qualifying_token_index"]
    assert read_neuronpedia(path) == cards


def test_a_computed_card_round_trips(tmp_path):
    card = FeatureCard(
        dictionary="d", feature=3, hook_name="blocks.2.hook_resid_pre", hook_name_out="blocks.2.hook_resid_pre",
        kind="sae", n_tokens=100, density=0.07, max_act=2.5, mean_act=0.1, mean_active=1.4,
        histogram_counts=[1, 0, 5], histogram_edges=[0.0, 1.0, 2.0, 3.0],
        contexts=[Context([" a", " b"], [0.5, 2.5], 1, row=4)],
        promoted=[(" x", 1.5)], suppressed=[(" y", -0.5)], logit_counts=[2, 1], logit_edges=[-0.5, 0.5, 1.5],
    )  # fmt: skip
    again = from_neuronpedia(json.loads(json.dumps(to_neuronpedia(card))), dictionary="d")
    for name in (
        "feature",
        "density",
        "max_act",
        "histogram_counts",
        "promoted",
        "suppressed",
        "logit_counts",
    ):
        assert getattr(again, name) == getattr(card, name), name
    assert again.histogram_edges == pytest.approx(card.histogram_edges)
    assert again.logit_edges == pytest.approx(card.logit_edges)
    assert [(c.tokens, c.values, c.max_index) for c in again.contexts] == [([" a", " b"], [0.5, 2.5], 1)]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"frac_nonzero": None}, r"has no frac_nonzero"),
        ({"pos_values": [1.0]}, r"pos_str has 3 entries and pos_values 1"),
        ({"activations": [{"tokens": ["a"], "values": [1.0, 2.0]}]}, r"activations\[0\]: tokens and values"),
        (
            {"activations": [{"tokens": ["a"], "values": [1.0], "qualifying_token_index": 3}]},
            r"outside its 1 tokens",
        ),
        ({"freq_hist_data_bar_heights": [1]}, r"bar values and bar heights must pair up"),
    ],
)
def test_a_malformed_feature_names_its_field(change, message):
    feature = dict(json.loads(BATCH.read_text())["features"][0], **change)
    if change.get("frac_nonzero", 0) is None:
        del feature["frac_nonzero"]
    with pytest.raises(InputError, match=message):
        from_neuronpedia(feature)
