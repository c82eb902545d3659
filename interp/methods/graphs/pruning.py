"""Pruning an attribution graph by influence on the logits, and its replacement and completeness scores.

As circuit-tracer (and Ameisen et al. 2025, "Pruning"): normalise the graph's edges to |A| with each
target's row summing to 1, so an entry is the share of a target's (absolute) input a source provides.
A node's influence is the logit-probability-weighted sum, over every path from it to a logit, of the
products of those shares: `w @ (N + N^2 + ...)` with `w` the logit probabilities on the logit nodes
(the graph has no cycles, so the series ends after its depth).

- Nodes: keep the most influential nodes that together hold `node_threshold` of the total influence
  (tokens and logits always kept).
- Edges: among the kept nodes, score each edge by its normalised weight times its target's influence
  (the logits counting their probability) and keep the strongest holding `edge_threshold` of the total.
- Then repeatedly drop feature and error nodes left with no outgoing edge, and features with no
  incoming one.

Scores of the whole graph (how much of the computation goes through features rather than errors):
the *replacement score* is the share of the tokens' and errors' influence that is the tokens' (1: the
logits depend on the input through features only); the *completeness score* the influence-weighted
mean, over nodes, of the share of each node's input that comes from non-error nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.base.errors import InputError
from interp.methods.graphs.attribution import AttributionGraph

NODE_THRESHOLD = 0.8
EDGE_THRESHOLD = 0.98


def normalized(adjacency: Float[Tensor, "node node"]) -> Float[Tensor, "node node"]:
    """|A| with each row (a target's incoming edges) summing to 1 (rows of zeros stay zero)."""
    absolute = adjacency.abs()
    return absolute / absolute.sum(1, keepdim=True).clamp_min(1e-10)


def influence(matrix: Float[Tensor, "node node"], weights: Float[Tensor, " node"]) -> Float[Tensor, " node"]:
    """`weights @ (M + M^2 + ...)` for an acyclic graph's M (the series ends after its depth)."""
    term = weights @ matrix
    total = term.clone()
    for _ in range(matrix.shape[0] + 1):
        if not term.any():
            return total
        term = term @ matrix
        total += term
    raise ValueError("influence did not converge: the graph has a cycle")


def logit_weights(graph: AttributionGraph) -> Float[Tensor, " node"]:
    """The logit probabilities on the logit nodes, zero elsewhere."""
    weights = torch.zeros(graph.n_nodes)
    weights[graph.n_nodes - graph.n_logits :] = graph.logit_probabilities
    return weights


def node_influence(graph: AttributionGraph) -> Float[Tensor, " node"]:
    """Each node's influence on the logits (see the module docstring)."""
    return influence(normalized(graph.adjacency), logit_weights(graph))


def _threshold(scores: Float[Tensor, " ..."], fraction: float) -> Float[Tensor, ""]:
    """The score above which the largest scores hold `fraction` of the total."""
    ordered = scores.sort(descending=True).values
    cumulative = ordered.cumsum(0) / ordered.sum().clamp_min(1e-30)
    index = int(torch.searchsorted(cumulative, torch.tensor(fraction, dtype=cumulative.dtype)))
    return ordered[min(index, len(ordered) - 1)]


@dataclass
class PrunedGraph:
    """Which nodes and edges pruning keeps, and each node's cumulative influence share (the fraction of
    the total influence held by it and every node more influential: small = important)."""

    node_mask: Bool[Tensor, " node"]
    edge_mask: Bool[Tensor, "node node"]  # [target, source]
    cumulative: Float[Tensor, " node"]
    influence: Float[Tensor, " node"]
    node_threshold: float
    edge_threshold: float


def prune_graph(
    graph: AttributionGraph, node_threshold: float = NODE_THRESHOLD, edge_threshold: float = EDGE_THRESHOLD
) -> PrunedGraph:
    """The nodes and edges that hold `node_threshold` / `edge_threshold` of the influence on the logits."""
    for name, value in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise InputError(f"{name}={value!r} is not allowed; it must be a number in [0, 1].")
    n_feat, n_fixed = graph.n_features, graph.n_pos + graph.n_logits  # tokens and logits: always kept
    last_source = graph.n_nodes - n_fixed  # features and errors come before tokens and logits
    weights = logit_weights(graph)
    scores = node_influence(graph)
    node_mask = scores >= _threshold(scores, node_threshold)
    node_mask[last_source:] = True
    kept = graph.adjacency.clone()
    kept[~node_mask] = 0
    kept[:, ~node_mask] = 0
    share = normalized(kept)
    edge_scores = share * (influence(share, weights) + weights)[:, None]
    edge_mask = edge_scores >= _threshold(edge_scores.flatten(), edge_threshold)
    edge_mask &= edge_scores > 0
    while True:  # drop what lost its edges until nothing changes (at most depth rounds)
        before = node_mask.clone()
        edge_mask[~node_mask] = False
        edge_mask[:, ~node_mask] = False
        node_mask[:last_source] &= edge_mask[:, :last_source].any(0)  # has an outgoing edge
        node_mask[:n_feat] &= edge_mask[:n_feat].any(1)  # a feature has an incoming edge
        if torch.equal(node_mask, before):
            break
    order = scores.argsort(descending=True)
    cumulative = torch.zeros_like(scores)
    cumulative[order] = scores[order].cumsum(0) / scores.sum().clamp_min(1e-30)
    return PrunedGraph(node_mask, edge_mask, cumulative, scores, float(node_threshold), float(edge_threshold))


@dataclass(frozen=True)
class GraphScores:
    """How much of the logits' computation the graph explains through features (1: all of it)."""

    replacement: float
    completeness: float


def graph_scores(graph: AttributionGraph, mask: Bool[Tensor, " node"] | None = None) -> GraphScores:
    """The replacement and completeness scores (module docstring); with `mask` (e.g. a pruned graph's
    nodes) the nodes left out count as error nodes, as circuit-tracer scores a pruned graph."""
    share = normalized(graph.adjacency)
    weights = logit_weights(graph)
    scores = influence(share, weights)
    bounds = graph.bounds()
    error = torch.zeros(graph.n_nodes, dtype=torch.bool)
    error[bounds["error"].start : bounds["error"].stop] = True
    if mask is not None:
        error |= ~mask
        error[bounds["token"].start :] = False
    tokens = slice(bounds["token"].start, bounds["token"].stop)
    token_influence, error_influence = scores[tokens].sum(), scores[error].sum()
    replacement = token_influence / (token_influence + error_influence).clamp_min(1e-30)
    outgoing = scores + weights
    non_error = 1 - share[:, error].sum(1)
    completeness = (non_error * outgoing).sum() / outgoing.sum().clamp_min(1e-30)
    return GraphScores(float(replacement), float(completeness))
