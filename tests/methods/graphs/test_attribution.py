"""Attribution graphs: complete by linearity, equal edge by edge to a reference that differentiates
nothing, and the planted path of a model built by construction found at the top of the pruned graph."""

from __future__ import annotations

import pytest
import torch

from interp.base.errors import InputError
from interp.methods.graphs.attribution import attribute, attribution_graph, logit_vectors, salient_logits
from interp.methods.graphs.pruning import prune_graph
from interp.methods.graphs.replacement import replacement_model
from methods.graphs.models import (
    ANSWER,
    F0,
    F1,
    PLANTED_PROMPT,
    PLANTED_TOKEN,
    planted_transcoders,
    random_transcoders,
)

TOKENS = torch.tensor([2, 33, 3, 34, 4, 5, 6, 71])
CASES = [
    ("relu", "transcoder", "ln1.hook_normalized", {}),
    ("topk", "transcoder", "ln1.hook_out", {"k": 4}),
    ("jumprelu", "skip_transcoder", "hook_resid_pre", {}),
]


def targets(graph) -> list[int]:
    return list(range(graph.n_features)) + list(range(graph.n_nodes - graph.n_logits, graph.n_nodes))


@torch.no_grad()
def frozen_inputs(rm, logit_tokens, acts, errors, embed):
    """Every target's input (features: pre-activation; logits: logit - mean logit) in the frozen model
    run with the given sources: activations [batch, active], errors [batch, layer, pos, d_model],
    embeddings [batch, pos, d_model]. A plain forward: no gradient anywhere."""
    writes = rm.feature_writes(acts)

    def mlp(layer, x):
        return (writes[layer] + errors[:, layer] + rm.transcoders[layer].skip(x)).to(x.dtype)

    keep = {}
    final = rm.run(embed, mlp, frozen=True, keep=keep)
    columns = []
    encoder = rm.encoder_vectors()
    for i, (layer, pos, feature) in enumerate(rm.active.tolist()):
        x = keep[f"blocks.{layer}.{rm.input_points[layer]}"][:, pos].float()
        columns.append(x @ encoder[i] + rm.transcoders[layer].b_enc[feature])
    logits = rm.unembed(final)[:, -1].float()
    columns += list((logits[:, logit_tokens] - logits.mean(-1, keepdim=True)).T)
    return torch.stack(columns, dim=1)


def reference_adjacency(rm, logit_tokens):
    """A[t, s] = target t's input with only source s on, minus its input with no source on: exact for
    the frozen (linear) model, one forward per source, no autograd."""
    n_feat, n_layers, n_pos = rm.active.shape[0], rm.n_layers, rm.n_pos
    n_sources = n_feat + n_layers * n_pos + n_pos
    d = rm.weights.W_E.shape[1]
    acts = torch.zeros(n_sources + 1, n_feat)
    errors = torch.zeros(n_sources + 1, n_layers, n_pos, d)
    embed = torch.zeros(n_sources + 1, n_pos, d)
    acts[torch.arange(n_feat), torch.arange(n_feat)] = rm.activations
    for layer in range(n_layers):
        for pos in range(n_pos):
            errors[n_feat + layer * n_pos + pos, layer, pos] = rm.errors[layer, pos]
    for pos in range(n_pos):
        embed[n_feat + n_layers * n_pos + pos, pos] = rm.weights.W_E[rm.tokens[pos]]
    inputs = frozen_inputs(rm, logit_tokens, acts, errors, embed)
    return (inputs[:-1] - inputs[-1]).T, inputs[-1]  # [target, source], the bias terms


@pytest.mark.parametrize(("architecture", "kind", "point", "fields"), CASES)
def test_each_nodes_edges_and_bias_terms_sum_to_its_input(tiny_model, architecture, kind, point, fields):
    """Completeness by linearity: incoming edges (from the batched backward passes) + bias terms (from a
    forward with every source off) = the node's input in the real forward, to float32 precision."""
    transcoders = random_transcoders(2, 80, 32, architecture, kind, point, **fields)
    graph = attribution_graph(tiny_model, TOKENS, transcoders, batch_size=16)
    assert graph.n_features > 20 and graph.n_logits >= 1
    t = targets(graph)
    explained = graph.adjacency.sum(1) + graph.bias
    assert (explained[t] - graph.node_inputs[t]).abs().max() <= 1e-5 * graph.node_inputs[t].abs().max()
    assert graph.bias[t].abs().max() > 0.1  # the bias terms are really there
    rows = graph.adjacency[graph.n_features : graph.n_nodes - graph.n_logits]
    assert not rows.any()  # errors and tokens have no incoming edges


@pytest.mark.parametrize(("architecture", "kind", "point", "fields"), CASES)
def test_edges_equal_a_reference_that_runs_one_forward_per_source(
    tiny_model, architecture, kind, point, fields
):
    transcoders = random_transcoders(2, 80, 32, architecture, kind, point, **fields)
    rm = replacement_model(tiny_model, TOKENS, transcoders)
    logit_tokens, logit_probs = salient_logits(rm.logits[-1])
    graph = attribute(rm, logit_tokens, logit_probs, batch_size=7)  # batches that mix layers and logits
    reference, bias = reference_adjacency(rm, logit_tokens)
    t = targets(graph)
    ours = graph.adjacency[t][:, : graph.n_nodes - graph.n_logits]
    scale = reference.abs().max()
    assert (ours - reference).abs().max() <= 1e-5 * scale
    assert (graph.bias[t] - bias).abs().max() <= 1e-5 * bias.abs().max()
    # causal structure: nothing from a later position or a later (or the same) layer
    for row, target in enumerate(t[: graph.n_features]):
        layer, pos = graph.node_layer_pos(target)
        for source in ours[row].nonzero()[:, 0].tolist():
            s_layer, s_pos = graph.node_layer_pos(source)
            assert s_pos <= pos and s_layer < layer


def test_the_batch_size_changes_nothing(tiny_model):
    transcoders = random_transcoders(2, 80, 32)
    one = attribution_graph(tiny_model, TOKENS, transcoders, batch_size=1)
    many = attribution_graph(tiny_model, TOKENS, transcoders, batch_size=1000)
    assert (one.adjacency - many.adjacency).abs().max() <= 1e-6 * many.adjacency.abs().max()


def test_logits_are_the_fewest_that_reach_the_probability():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.1, 0.06, 0.04]))
    tokens, probs = salient_logits(logits, max_logits=10, logit_probability=0.85)
    assert tokens.tolist() == [0, 1, 2] and torch.allclose(probs, torch.tensor([0.5, 0.3, 0.1]))
    assert salient_logits(logits, max_logits=2, logit_probability=0.95)[0].tolist() == [0, 1]
    with pytest.raises(InputError, match="logit_probability"):
        salient_logits(logits, logit_probability=0.0)


def test_a_logit_nodes_vector_is_its_demeaned_unembedding(tiny_model):
    rm = replacement_model(tiny_model, TOKENS, random_transcoders(2, 80))
    W_U = tiny_model.original_model.lm_head.weight
    assert torch.allclose(logit_vectors(rm, torch.tensor([5]))[0], W_U[5] - W_U.mean(0))


def node(graph, layer, pos, feature) -> int:
    return int((graph.active == torch.tensor([layer, pos, feature])).all(1).nonzero()[0, 0])


class TestPlantedPath:
    """token PLANTED_TOKEN -> layer 0 feature F0 -> layer 1 feature F1 -> logit ANSWER, at the last position."""

    def test_the_pruned_graph_is_exactly_the_path(self, planted_model):
        graph = attribution_graph(planted_model, PLANTED_PROMPT, planted_transcoders(planted_model))
        last = len(PLANTED_PROMPT) - 1
        assert graph.logit_tokens.tolist() == [ANSWER]
        pruned = prune_graph(graph)
        kept_features = [graph.active[i].tolist() for i in range(graph.n_features) if pruned.node_mask[i]]
        assert kept_features == [[0, last, F0], [1, last, F1]]
        bounds = graph.bounds()
        assert not pruned.node_mask[bounds["error"].start : bounds["error"].stop].any()
        token = bounds["token"].start + last
        f0, f1 = node(graph, 0, last, F0), node(graph, 1, last, F1)
        logit = bounds["logit"].start
        kept_edges = sorted(map(tuple, pruned.edge_mask.nonzero().tolist()))
        assert kept_edges == sorted([(f0, token), (f1, f0), (logit, f1)])
        # the most influential nodes, in order: the path
        top = pruned.influence.argsort(descending=True)[:3].tolist()
        assert top == [f1, f0, token]
        assert graph.token_strings[last] == planted_model.tokenizer.decode([PLANTED_TOKEN])

    def test_its_edges_are_the_planted_weights(self, planted_model):
        """F0's input is all the token's (pre-activation 4, b_enc 0), F1's all F0's (up to the 1e-4 error)."""
        graph = attribution_graph(planted_model, PLANTED_PROMPT, planted_transcoders(planted_model))
        last = len(PLANTED_PROMPT) - 1
        f0, f1 = node(graph, 0, last, F0), node(graph, 1, last, F1)
        token = graph.bounds()["token"].start + last
        assert graph.adjacency[f0, token] == pytest.approx(4.0, rel=1e-5)
        assert graph.adjacency[f1, f0] == pytest.approx(4.0, rel=1e-3)
        logit = graph.bounds()["logit"].start
        assert graph.adjacency[logit, f1] == pytest.approx(float(graph.node_inputs[logit]), rel=1e-3)
        assert PLANTED_TOKEN in graph.tokens.tolist()


def test_the_toy_graph_is_complete(toy_model):
    """The trained toy (4 layers, d_model 160) with random transcoders: complete to float32 precision."""
    transcoders = random_transcoders(4, 160, 64, "topk", k=8)
    graph = attribution_graph(
        toy_model, "When Mary and John went to the store, John gave a drink to", transcoders
    )
    t = targets(graph)
    explained = graph.adjacency.sum(1) + graph.bias
    assert (explained[t] - graph.node_inputs[t]).abs().max() <= 1e-5 * graph.node_inputs[t].abs().max()
    assert graph.prompt.startswith("When Mary") and len(graph.token_strings) == graph.n_pos


def test_bad_prompts_are_refused(tiny_model):
    transcoders = random_transcoders(2, 80)
    with pytest.raises(InputError, match="empty"):
        attribution_graph(tiny_model, "", transcoders)
    with pytest.raises(InputError, match="token ids must be in 0..383"):
        attribution_graph(tiny_model, [1, 999], transcoders)
    with pytest.raises(InputError, match="batch_size"):
        attribution_graph(tiny_model, [1, 2], transcoders, batch_size=0)


class TestMaxFeatureNodes:
    """A cap on feature nodes keeps the most influential ones, each row exactly the full graph's."""

    def test_the_kept_rows_are_the_full_graphs_and_the_shortfall_is_the_dropped_features(self, tiny_model):
        transcoders = random_transcoders(2, 80, 32)
        full = attribution_graph(tiny_model, TOKENS, transcoders, batch_size=8)
        capped = attribution_graph(tiny_model, TOKENS, transcoders, batch_size=8, max_feature_nodes=40)
        assert capped.n_features == 40 and capped.n_active == full.n_features
        index = {tuple(f): i for i, f in enumerate(full.active.tolist())}
        chosen = torch.tensor([index[tuple(f)] for f in capped.active.tolist()])
        assert (chosen.diff() > 0).all()  # sorted as the full graph's
        f = full.n_features
        others = torch.arange(f, full.n_nodes)
        full_cols = torch.cat([chosen, others])
        full_rows = torch.cat([chosen, others])
        expected = full.adjacency[full_rows][:, full_cols]
        assert (capped.adjacency - expected).abs().max() <= 1e-6 * full.adjacency.abs().max()
        # a kept node's input = its edges + bias + what the dropped features sent it
        dropped = torch.ones(f, dtype=torch.bool)
        dropped[chosen] = False
        sent = full.adjacency[full_rows][:, :f][:, dropped].sum(1)
        explained = capped.adjacency.sum(1) + capped.bias + sent
        t = targets(capped)
        assert (explained[t] - capped.node_inputs[t]).abs().max() <= 1e-5 * capped.node_inputs[t].abs().max()

    def test_the_planted_path_survives_a_cap_of_two(self, planted_model):
        graph = attribution_graph(
            planted_model, PLANTED_PROMPT, planted_transcoders(planted_model), max_feature_nodes=2
        )
        last = len(PLANTED_PROMPT) - 1
        assert graph.active.tolist() == [[0, last, F0], [1, last, F1]] and graph.n_active > 2

    def test_a_cap_of_every_feature_is_the_full_graph(self, tiny_model):
        transcoders = random_transcoders(2, 80, 32)
        full = attribution_graph(tiny_model, TOKENS, transcoders)
        same = attribution_graph(tiny_model, TOKENS, transcoders, max_feature_nodes=10_000)
        assert torch.equal(full.adjacency, same.adjacency) and torch.equal(full.active, same.active)
