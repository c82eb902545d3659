"""A graph's predicted logit changes against the replacement model's and the spliced model's."""

from __future__ import annotations

import pytest
import torch

from interp.base.errors import InputError
from interp.methods.graphs.attribution import attribute, salient_logits
from interp.methods.graphs.interventions import check_intervention, predict, scaled
from interp.methods.graphs.replacement import Intervention, replacement_model
from methods.graphs.models import F0, F1, PLANTED_PROMPT, planted_transcoders, random_transcoders

TOKENS = torch.tensor([2, 33, 3, 34, 4, 5, 6, 71])


def build(model, tokens, transcoders):
    rm = replacement_model(model, tokens, transcoders)
    logit_tokens, probs = salient_logits(rm.logits[-1])
    return rm, attribute(rm, logit_tokens, probs)


def test_the_graph_predicts_the_local_replacement_model_while_no_feature_switches(tiny_model):
    """Scaling the strongest last-position features by half: no feature switches on or off, and the
    graph's prediction (propagated through its edges) equals the local model's change."""
    rm, graph = build(tiny_model, TOKENS, random_transcoders(2, 80, 32))
    last = graph.active[:, 1] == len(TOKENS) - 1
    layer0 = (last & (graph.active[:, 0] == 0)).nonzero()[:, 0]
    chosen = layer0[graph.activations[layer0].argsort(descending=True)[:3]].tolist()
    check = check_intervention(graph, rm, scaled(graph, chosen, 0.5))
    assert check.flipped_local == 0
    assert check.predicted.abs().max() > 0.01  # a change to predict, far above float32 rounding (1e-6)
    assert (check.predicted - check.local).abs().max() <= 1e-3 * check.predicted.abs().max()
    assert not torch.allclose(check.local, check.spliced, rtol=1e-3)  # attention and LayerNorm respond


def test_predict_is_linear_in_the_change(tiny_model):
    rm, graph = build(tiny_model, TOKENS, random_transcoders(2, 80, 32))
    node = int(graph.activations.argmax())
    half = predict(graph, scaled(graph, [node], 0.5))
    zero = predict(graph, scaled(graph, [node], 0.0))
    assert torch.allclose(zero, 2 * half, rtol=1e-5, atol=1e-7)


def test_ablating_the_planted_path_removes_the_answer(planted_model):
    """Ablating F0 (or the supernode {F0, F1}) removes F1's contribution to the answer's logit in the
    graph, in the local model and, up to LayerNorm's response, in the spliced real model."""
    rm, graph = build(planted_model, torch.tensor(PLANTED_PROMPT), planted_transcoders(planted_model))
    last = len(PLANTED_PROMPT) - 1
    f0 = int((graph.active == torch.tensor([0, last, F0])).all(1).nonzero()[0, 0])
    f1 = int((graph.active == torch.tensor([1, last, F1])).all(1).nonzero()[0, 0])
    contribution = float(graph.adjacency[graph.bounds()["logit"].start, f1])
    for nodes in ([f0], [f0, f1]):
        check = check_intervention(graph, rm, scaled(graph, nodes, 0.0))
        assert float(check.predicted[0]) == pytest.approx(-contribution, rel=1e-3)
        assert float(check.local[0]) == pytest.approx(-contribution, rel=1e-3)
        assert float(check.spliced[0]) < -0.5 * contribution
    assert check.rows()[0][0] == graph.logit_strings[0]


def test_a_feature_that_is_not_a_node_is_refused(tiny_model):
    rm, graph = build(tiny_model, TOKENS, random_transcoders(2, 80, 32))
    on = set(map(tuple, graph.active.tolist()))
    off = next((0, 0, f) for f in range(32) if (0, 0, f) not in on)
    with pytest.raises(InputError, match="not active at position 0"):
        predict(graph, [Intervention(*off, 1.0)])
    with pytest.raises(InputError, match="is not a feature"):
        scaled(graph, [graph.n_features], 0.0)
    other = replacement_model(tiny_model, TOKENS.flip(0), random_transcoders(2, 80, 32))
    with pytest.raises(InputError, match="not the one this graph was built from"):
        check_intervention(graph, other, scaled(graph, [0], 0.0))
