"""A feature's card: the tokens its decoder row promotes and suppresses through the unembedding."""

from __future__ import annotations

from interp.methods.graphs.attribution import attribution_graph
from interp.methods.graphs.promoted import promoted_tokens
from interp.viz.graph_view import GraphView
from methods.graphs.models import ANSWER, F0, F1, PLANTED_PROMPT, planted_transcoders


def test_the_planted_feature_promotes_the_answer(planted_model):
    """F1 writes 3w and only ANSWER's unembedding row has a w component: ANSWER comes first."""
    transcoders = planted_transcoders(planted_model)
    graph = attribution_graph(planted_model, PLANTED_PROMPT, transcoders)
    last = len(PLANTED_PROMPT) - 1
    cards = promoted_tokens(planted_model, transcoders, graph, k=3)
    assert set(cards) == {f"{layer}_{feature}_{pos}" for layer, pos, feature in graph.active.tolist()}
    answer = planted_model.tokenizer.decode([ANSWER])
    assert cards[f"1_{F1}_{last}"]["promotes"][0] == answer
    assert answer not in cards[f"1_{F1}_{last}"]["suppresses"] and f"0_{F0}_{last}" in cards
    assert (
        answer in cards[f"1_{F1}_{last}"]["promotes"][:1] and len(cards[f"1_{F1}_{last}"]["suppresses"]) == 3
    )
    only = promoted_tokens(planted_model, transcoders, graph, k=3, only={f"1_{F1}_{last}"})
    assert list(only) == [f"1_{F1}_{last}"] and only[f"1_{F1}_{last}"]["promotes"][0] == answer
    # (every other token's logit is 0 up to rounding for the planted rows: only the first place is meaningful)


def test_the_view_carries_the_cards():
    graph = {
        "metadata": {"prompt_tokens": ["a"]},
        "nodes": [
            {
                "node_id": "0_3_0",
                "feature": 3,
                "layer": "0",
                "ctx_idx": 0,
                "feature_type": "cross layer transcoder",
            }
        ],
        "links": [],
    }
    view = GraphView(graph, cards={"0_3_0": {"promotes": ["x", "<b>"]}})
    assert view.data["nodes"][0]["card"] == {"promotes": ["x", "<b>"]}
    assert GraphView(graph).data["nodes"][0]["card"] == {}
