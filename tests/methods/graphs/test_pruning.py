"""Influence, pruning and the graph scores, on graphs whose answers are known."""

from __future__ import annotations

import pytest
import torch

from interp.base.errors import InputError
from interp.methods.graphs.attribution import AttributionGraph
from interp.methods.graphs.pruning import graph_scores, influence, node_influence, normalized, prune_graph


def make_graph(adjacency, n_features, n_layers=1, n_pos=1, probabilities=(1.0,)) -> AttributionGraph:
    """A graph with the given adjacency over [features, errors, tokens, logits]."""
    n = adjacency.shape[0]
    n_logits = len(probabilities)
    assert n == n_features + n_layers * n_pos + n_pos + n_logits
    return AttributionGraph(
        tokens=torch.arange(n_pos),
        token_strings=[f"t{i}" for i in range(n_pos)],
        active=torch.tensor([[0, 0, i] for i in range(n_features)], dtype=torch.long).reshape(-1, 3),
        activations=torch.ones(n_features),
        logit_tokens=torch.arange(n_logits),
        logit_strings=[f"l{i}" for i in range(n_logits)],
        logit_probabilities=torch.tensor(probabilities),
        adjacency=adjacency.float(),
        node_inputs=torch.zeros(n),
        bias=torch.zeros(n),
        n_layers=n_layers,
    )


def chain_graph() -> AttributionGraph:
    """Nodes: f0, f1, f2 (features), e (error), t (token), L (logit).
    t -> f0 (2), f0 -> f1 (3), t -> f1 (-1), f1 -> L (4), e -> L (1), f2 -> L (0.01), t -> f2 (1)."""
    A = torch.zeros(6, 6)
    f0, f1, f2, e, t, L = range(6)
    A[f0, t] = 2
    A[f1, f0], A[f1, t] = 3, -1
    A[f2, t] = 1
    A[L, f1], A[L, e], A[L, f2] = 4, 1, 0.01
    return make_graph(A, n_features=3)


def test_influence_is_the_series_of_the_normalised_matrix():
    """Against the closed form w ((I - N)^-1 - I) of the series N + N^2 + ..."""
    graph = chain_graph()
    N = normalized(graph.adjacency).double()
    w = torch.zeros(6, dtype=torch.float64)
    w[5] = 1.0
    expected = w @ (
        torch.linalg.inv(torch.eye(6, dtype=torch.float64) - N) - torch.eye(6, dtype=torch.float64)
    )
    assert torch.allclose(node_influence(graph).double(), expected, atol=1e-6)
    # by hand: f1 gets 4/5.01 of L's input; f0 3/4 of f1's; t the rest of f1's, all f0's and f2's
    f1 = 4 / 5.01
    assert node_influence(graph)[1] == pytest.approx(f1, rel=1e-5)
    assert node_influence(graph)[0] == pytest.approx(f1 * 0.75, rel=1e-5)


def test_a_cycle_is_an_error():
    A = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="cycle"):
        influence(normalized(A), torch.tensor([1.0, 0.0]))


def test_pruning_keeps_the_path_and_drops_the_weak_branch():
    graph = chain_graph()
    pruned = prune_graph(graph, node_threshold=0.8, edge_threshold=0.98)
    # influences: t 0.8, f1 0.8, f0 0.6, e 0.2, f2 0.002 (of 2.4): t, f1 and f0 hold 80%; e and f2 are
    # pruned; tokens and logits always stay
    assert pruned.node_mask.tolist() == [True, True, False, False, True, True]
    kept = set(map(tuple, pruned.edge_mask.nonzero().tolist()))
    assert (5, 2) not in kept and (2, 4) not in kept and {(1, 0), (5, 1), (0, 4)} <= kept
    # every kept feature has an incoming and an outgoing kept edge
    for f in range(3):
        if pruned.node_mask[f]:
            assert pruned.edge_mask[f].any() and pruned.edge_mask[:, f].any()


def test_threshold_one_keeps_every_node_with_influence():
    graph = chain_graph()
    pruned = prune_graph(graph, node_threshold=1.0, edge_threshold=1.0)
    assert pruned.node_mask.all()
    assert (pruned.edge_mask == (graph.adjacency != 0)).all()


def test_cumulative_influence_orders_the_nodes():
    pruned = prune_graph(chain_graph())
    order = pruned.influence.argsort(descending=True)
    assert (pruned.cumulative[order].diff() >= 0).all() and pruned.cumulative.max() == pytest.approx(1.0)


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_thresholds_outside_zero_one_are_refused(value):
    with pytest.raises(InputError, match="node_threshold"):
        prune_graph(chain_graph(), node_threshold=value)


class TestScores:
    def test_a_graph_without_errors_scores_one(self):
        A = torch.zeros(5, 5)  # f0, f1, e, t, L
        A[0, 3], A[1, 0], A[4, 1] = 1, 1, 1
        scores = graph_scores(make_graph(A, n_features=2))
        assert scores.replacement == pytest.approx(1.0) and scores.completeness == pytest.approx(1.0)

    def test_a_logit_fed_by_errors_only_scores_zero_replacement(self):
        A = torch.zeros(5, 5)
        A[4, 2] = 1.0  # L <- e
        scores = graph_scores(make_graph(A, n_features=2))
        assert scores.replacement == pytest.approx(0.0)
        # L (weight 1) is all error: 0; e (influence 1) has no input: counts as complete
        assert scores.completeness == pytest.approx(0.5)

    def test_the_chain_graphs_scores_by_hand(self):
        graph = chain_graph()
        scores = graph_scores(graph)
        inf = node_influence(graph)
        e, t = inf[3], inf[4]
        assert scores.replacement == pytest.approx(float(t / (t + e)), rel=1e-5)
        weights = torch.tensor([0, 0, 0, 0, 0, 1.0])
        non_error = torch.tensor([1, 1, 1, 1, 1, 1 - 1 / 5.01])
        expected = (non_error * (inf + weights)).sum() / (inf + weights).sum()
        assert scores.completeness == pytest.approx(float(expected), rel=1e-5)

    def test_pruned_nodes_count_as_errors(self):
        graph = chain_graph()
        mask = torch.tensor([True, False, True, True, True, True])  # f1 left out
        assert graph_scores(graph, mask).replacement < graph_scores(graph).replacement
