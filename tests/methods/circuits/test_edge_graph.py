"""The edge graph (interp.methods.circuits.graph): Phi's parallel blocks, EAP-IG's names and layout."""

from __future__ import annotations

import pytest

from interp.methods.circuits.graph import Graph, expected_edge_count


@pytest.mark.parametrize("n_layers, n_heads", [(1, 1), (2, 2), (4, 4), (3, 5)])
def test_the_graph_counts_its_edges_as_the_formula_says(n_layers, n_heads):
    graph = Graph(n_layers, n_heads)
    assert graph.n_edges == expected_edge_count(n_layers, n_heads) == len(graph.edge_names)
    assert len(set(graph.edge_names)) == graph.n_edges


def test_phi2_has_1591857_edges():
    assert expected_edge_count(32, 32) == 1_591_857
    assert Graph(32, 32).n_edges == 1_591_857


def test_parallel_blocks_mlp_does_not_read_its_own_layers_heads():
    names = set(Graph(3, 2).edge_names)
    assert "a1.h0->m1" not in names and "a0.h0->m1" in names and "input->m0" in names
    assert "a1.h0->a1.h1<q>" not in names and "m0->a1.h1<k>" in names and "m2->logits" in names
    assert "m1->m1" not in names and not any(name.startswith("logits") for name in names)


def test_matrix_layout_is_eap_igs():
    """Forward index: input, then per layer the heads and the MLP; backward: per layer q, k, v of every
    head then the MLP; last the logits (EAP-IG's Graph._forward_index / _backward_index)."""
    L, H = 3, 4
    graph = Graph(L, H)
    for layer in range(L):
        for head in range(H):
            assert graph.sender_index(f"a{layer}.h{head}") == 1 + layer * (H + 1) + head
            for i, part in enumerate("qkv"):
                assert graph.receiver_index(f"a{layer}.h{head}<{part}>") == layer * (3 * H + 1) + i * H + head
        assert graph.sender_index(f"m{layer}") == 1 + layer * (H + 1) + H
        assert graph.receiver_index(f"m{layer}") == layer * (3 * H + 1) + 3 * H
    assert graph.receiver_index("logits") == graph.n_backward - 1 == L * (3 * H + 1)
    assert graph.n_forward == 1 + L * (H + 1)


def test_vectors_and_matrices_round_trip():
    import torch

    graph = Graph(2, 3)
    values = torch.arange(graph.n_edges, dtype=torch.float32)
    matrix = graph.to_matrix(values)
    assert torch.equal(graph.from_matrix(matrix), values)
    s, r = graph.edge_index[5].tolist()
    assert matrix[s, r] == 5 and graph.edge_position(graph.edge_names[5]) == 5
