"""Circuits (interp.methods.circuits.circuit): evaluation invariants, selection, faithfulness, EAP-IG JSON."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import ioi_pairs

from interp.methods.circuits.circuit import (
    FaithfulnessCurve,
    evaluate_circuit,
    faithfulness_curve,
    load_circuit,
    prune_dangling,
    save_circuit,
    select,
)
from interp.methods.circuits.edge_patching import edge_patch
from interp.methods.circuits.graph import Graph
from interp.methods.circuits.scores import EdgeScores
from interp.methods.contrastive import contrast

N_EDGES = Graph(4, 4).n_edges


@pytest.fixture(scope="module")
def pairs(toy_model):
    return ioi_pairs(toy_model.tokenizer, 8, seed=6)


@pytest.fixture(scope="module")
def exact(toy_model, pairs):
    return edge_patch(toy_model, pairs)


class TestEvaluation:
    def test_full_graph_gives_the_clean_metric_empty_the_corrupted(self, toy_model, pairs):
        core = contrast(toy_model, pairs)
        full = evaluate_circuit(toy_model, pairs, torch.ones(N_EDGES, dtype=torch.bool))
        empty = evaluate_circuit(toy_model, pairs, torch.zeros(N_EDGES, dtype=torch.bool))
        assert (full - core.clean_values).abs().max() <= 1e-4
        assert (empty - core.corrupted_values).abs().max() <= 1e-4

    @pytest.mark.parametrize("mode", ["mean", "zero"])
    def test_other_modes_keep_the_full_graph_clean(self, toy_model, pairs, mode):
        core = contrast(toy_model, pairs)
        full = evaluate_circuit(toy_model, pairs, torch.ones(N_EDGES, dtype=torch.bool), mode=mode)
        empty = evaluate_circuit(toy_model, pairs, torch.zeros(N_EDGES, dtype=torch.bool), mode=mode)
        assert (full - core.clean_values).abs().max() <= 1e-4
        assert (empty - core.corrupted_values).abs().max() > 1e-2  # an ablation, not the corrupted run

    def test_bad_masks_and_modes(self, toy_model, pairs):
        with pytest.raises(ValueError, match="bool mask of 463 edges"):
            evaluate_circuit(toy_model, pairs, torch.ones(5, dtype=torch.bool))
        with pytest.raises((ValueError, TypeError), match="counterfactual"):
            evaluate_circuit(toy_model, pairs, torch.ones(N_EDGES, dtype=torch.bool), mode="resample")


class TestSelection:
    def test_top_k_by_score_or_magnitude(self, exact):
        by_magnitude = select(exact, top_k=5, prune=False)
        assert int(by_magnitude.sum()) == 5
        assert set(exact.graph.edge_names[i] for i in by_magnitude.nonzero().flatten().tolist()) == {
            name for name, _ in exact.top(5)
        }
        by_signed = select(exact, top_k=5, absolute=False, prune=False)  # noising: most negative first
        assert bool(exact.values[by_signed].max() <= exact.values[~by_signed].min())

    def test_threshold_and_fraction(self, exact):
        assert torch.equal(select(exact, threshold=1.0, prune=False), exact.values.abs() >= 1.0)
        assert int(select(exact, top_fraction=0.1, prune=False).sum()) == int(0.1 * N_EDGES)
        with pytest.raises(ValueError, match="exactly one of"):
            select(exact, top_k=3, threshold=1.0)

    def test_greedy_circuits_are_connected(self, exact):
        circuit = select(exact, top_k=12, greedy=True)
        assert torch.equal(prune_dangling(exact.graph, circuit), circuit)
        names = [exact.graph.edge_names[i] for i in circuit.nonzero().flatten().tolist()]
        assert any(name.endswith("->logits") for name in names)

    def test_pruning_removes_edges_off_every_path(self):
        graph = Graph(2, 1)
        scores = EdgeScores(graph, torch.zeros(graph.n_edges), "x", "noising", "logit_diff", 1.0, 0.0)
        chosen = torch.zeros(graph.n_edges, dtype=torch.bool)
        for name in ["input->a0.h0<v>", "a0.h0->logits", "m0->a1.h0<q>"]:  # the last reaches nothing
            chosen[graph.edge_position(name)] = True
        kept = prune_dangling(graph, chosen)
        assert [graph.edge_names[i] for i in kept.nonzero().flatten().tolist()] == [
            "input->a0.h0<v>",
            "a0.h0->logits",
        ]
        assert scores.graph is graph


def test_the_toy_ioi_circuit_joins_the_previous_token_head_and_the_name_mover(exact):
    """On the toy model the exact IOI circuit runs input -> m0 -> a1.h0 (L1H0) -> a3.h2 (L3H2) -> logits."""
    circuit = select(exact, top_k=8, greedy=True)
    names = {exact.graph.edge_names[i] for i in circuit.nonzero().flatten().tolist()}
    print("toy IOI circuit (8 edges, greedy):", sorted(names))
    assert "a3.h2->logits" in names and "a1.h0->a3.h2<v>" in names
    assert any(name.endswith("->a1.h0<v>") for name in names)


def test_faithfulness_curve_and_mib_areas(toy_model, pairs, exact):
    curve = faithfulness_curve(toy_model, pairs, exact)
    print("faithfulness (|score|):", [f"{f:.3f}" for f in curve.faithfulness], "CMD", curve.area_from_one)
    assert curve.faithfulness[-1] == pytest.approx(1.0, abs=1e-4)  # 100% of edges is the full model
    assert curve.n_edges[-1] == N_EDGES and curve.n_edges == sorted(curve.n_edges)
    signed = faithfulness_curve(toy_model, pairs, exact, absolute=False)
    print("faithfulness (signed):", [f"{f:.3f}" for f in signed.faithfulness], "CPR", signed.area_under)
    assert signed.faithfulness[4] > 0.9  # the 2% most important edges already carry the behaviour


def test_mib_areas_by_the_trapezoid_rule():
    curve = FaithfulnessCurve([0.0, 0.5, 1.0], [0, 1, 2], [0.0, 1.0, 1.0], 1.0, 0.0, True, "counterfactual")
    assert curve.area_under == pytest.approx(0.25 + 0.5)
    assert curve.area_from_one == pytest.approx(0.25)


def test_json_round_trip_in_eap_igs_layout(tmp_path, exact):
    circuit = select(exact, top_k=6, greedy=True)
    path = save_circuit(tmp_path / "ioi.json", exact, circuit)
    data = json.loads(path.read_text())
    assert set(data) == {"cfg", "nodes", "edges"} and data["cfg"]["parallel_attn_mlp"] is True
    assert data["edges"]["a3.h2->logits"] == {
        "score": pytest.approx(exact.values[exact.graph.edge_position("a3.h2->logits")].item()),
        "in_graph": True,
    }
    assert data["nodes"]["logits"]["in_graph"] and len(data["edges"]) == N_EDGES
    scores, loaded = load_circuit(path)
    assert torch.equal(loaded, circuit) and torch.allclose(scores.values, exact.values)


def test_loading_refuses_other_layouts(tmp_path):
    (tmp_path / "x.json").write_text(
        json.dumps({"cfg": {"n_layers": 2, "n_heads": 2, "parallel_attn_mlp": False}, "edges": {}})
    )
    with pytest.raises(ValueError, match="sequential blocks"):
        load_circuit(tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"nodes": {}}))
    with pytest.raises(ValueError, match="not a circuit in EAP-IG's JSON layout"):
        load_circuit(tmp_path / "y.json")
