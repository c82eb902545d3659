"""Circuits (interp.methods.circuits.circuit): evaluation invariants, selection, faithfulness, EAP-IG JSON."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest
import torch
from helpers import ioi_pairs

from interp.base.errors import InputError
from interp.methods.circuits.circuit import (
    FaithfulnessCurve,
    circuit_json,
    evaluate_circuit,
    faithfulness_curve,
    load_circuit,
    prune_dangling,
    save_circuit,
    select,
)
from interp.methods.circuits.edge_patching import edge_patch
from interp.methods.circuits.graph import Circuit, Graph, check_mask
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


class TestMeanOver:
    """`mean_over` names the prompts a mean ablation averages (the corrupted ones by default)."""

    def test_clean_averages_the_clean_prompts(self, toy_model, pairs):
        empty = torch.zeros(N_EDGES, dtype=torch.bool)
        default = evaluate_circuit(toy_model, pairs, empty, mode="mean")
        corrupted = evaluate_circuit(toy_model, pairs, empty, mode="mean", mean_over="corrupted")
        clean = evaluate_circuit(toy_model, pairs, empty, mode="mean", mean_over="clean")
        assert torch.equal(default, corrupted)
        assert (clean - corrupted).abs().max() > 1e-2  # the two means differ
        # planted: pairs whose corrupted prompts are the clean ones average the same prompts
        both_clean = dataclasses.replace(pairs, corrupted_tokens=pairs.clean_tokens)
        assert torch.allclose(clean, evaluate_circuit(toy_model, both_clean, empty, mode="mean"), atol=1e-5)

    def test_it_is_read_with_mean_only(self, toy_model, pairs):
        full = torch.ones(N_EDGES, dtype=torch.bool)
        with pytest.raises(InputError, match="mean_over='clean' is read only with mode='mean'"):
            evaluate_circuit(toy_model, pairs, full, mode="zero", mean_over="clean")
        # refused by the annotation under the runtime type checker, else by name
        with pytest.raises((InputError, TypeError), match="corrupted"):
            evaluate_circuit(toy_model, pairs, full, mode="mean", mean_over="both")


class TestSelection:
    def test_top_k_by_score_or_magnitude(self, exact):
        by_magnitude = select(exact, top_k=5, prune=False)
        assert int(by_magnitude.mask.sum()) == 5
        assert set(exact.graph.edge_names[i] for i in by_magnitude.mask.nonzero().flatten().tolist()) == {
            name for name, _ in exact.top(5)
        }
        by_signed = select(exact, top_k=5, absolute=False, prune=False).mask  # noising: most negative first
        assert bool(exact.values[by_signed].max() <= exact.values[~by_signed].min())

    def test_threshold_and_fraction(self, exact):
        assert torch.equal(select(exact, threshold=1.0, prune=False).mask, exact.values.abs() >= 1.0)
        assert int(select(exact, top_fraction=0.1, prune=False).mask.sum()) == int(0.1 * N_EDGES)
        with pytest.raises(ValueError, match="exactly one of"):
            select(exact, top_k=3, threshold=1.0)

    def test_greedy_circuits_are_connected(self, exact):
        circuit = select(exact, top_k=12, greedy=True)
        assert torch.equal(prune_dangling(exact.graph, circuit).mask, circuit.mask)
        names = [exact.graph.edge_names[i] for i in circuit.mask.nonzero().flatten().tolist()]
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
    names = {exact.graph.edge_names[i] for i in circuit.mask.nonzero().flatten().tolist()}
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
    assert torch.equal(loaded.mask, circuit.mask) and torch.allclose(scores.values, exact.values)


def test_loading_refuses_other_layouts(tmp_path):
    (tmp_path / "x.json").write_text(
        json.dumps({"cfg": {"n_layers": 2, "n_heads": 2, "parallel_attn_mlp": False}, "edges": {}})
    )
    with pytest.raises(ValueError, match="sequential blocks"):
        load_circuit(tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"nodes": {}}))
    with pytest.raises(ValueError, match="not a circuit in EAP-IG's JSON layout"):
        load_circuit(tmp_path / "y.json")


def _unchecked(function):
    """The function past the test suite's runtime type checks: what a user calling it gets."""
    import inspect

    return inspect.unwrap(function)


class TestCircuit:
    """`select` and `load_circuit` give a `Circuit`: len() counts its edges, not the graph's (was: a bool
    mask, whose len() is every edge of the graph)."""

    def test_len_iteration_and_membership_count_the_circuits_edges(self, exact):
        circuit = select(exact, top_k=7, prune=False)
        assert len(circuit) == 7 == int(circuit.mask.sum()) and circuit.graph.n_edges == N_EDGES
        assert list(circuit) == circuit.edges == sorted(circuit.edges, key=exact.graph.edge_position)
        assert set(circuit) == {name for name, _ in exact.top(7)}
        outside = next(name for name in exact.graph.edge_names if name not in set(circuit.edges))
        assert circuit.edges[0] in circuit and outside not in circuit and "not an edge" not in circuit
        assert circuit.nodes == {n for e in circuit.edges for n in e.split("<")[0].split("->")}
        assert repr(circuit).startswith(f"Circuit(7 of {N_EDGES} edges: ")
        empty = select(exact, top_k=0)
        assert len(empty) == 0 and list(empty) == []

    def test_masks_and_circuits_are_taken_alike(self, toy_model, pairs, exact, tmp_path):
        circuit = select(exact, top_k=6, greedy=True)
        assert torch.equal(
            evaluate_circuit(toy_model, pairs, circuit), evaluate_circuit(toy_model, pairs, circuit.mask)
        )
        save_circuit(tmp_path / "a.json", exact, circuit)
        save_circuit(tmp_path / "b.json", exact, circuit.mask)
        assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
        _, loaded = load_circuit(tmp_path / "a.json")
        assert len(loaded) == len(circuit) and loaded.edges == circuit.edges

    def test_a_circuit_of_another_graph_is_refused(self, exact):
        with pytest.raises(InputError, match="bool mask of 463 edges"):
            Circuit(exact.graph, torch.ones(5, dtype=torch.bool))
        other = Circuit(Graph(2, 2), torch.ones(Graph(2, 2).n_edges, dtype=torch.bool))
        with pytest.raises(InputError, match="the circuit is over a Graph"):
            save_circuit("unused.json", exact, other)


class TestHostileCircuitFiles:
    """Every bad field of a circuit file is refused by name, with its value and what is allowed."""

    @pytest.fixture
    def good(self, exact):
        circuit = select(exact, top_k=6, greedy=True)
        return json.loads(json.dumps(circuit_json(exact, circuit)))

    def load(self, tmp_path, data, text=None):
        path = tmp_path / "c.json"
        path.write_text(text if text is not None else json.dumps(data))
        return load_circuit(path)

    def test_a_missing_score_names_the_edge(self, tmp_path, good):
        del good["edges"]["a3.h2->logits"]["score"]
        with pytest.raises(InputError, match=r"edges\['a3.h2->logits'\].*has no 'score'"):
            self.load(tmp_path, good)

    @pytest.mark.parametrize("value", ["false", 0, 1, None, "true"])
    def test_in_graph_must_be_a_json_boolean(self, tmp_path, good, value):
        good["edges"]["input->m0"]["in_graph"] = value
        with pytest.raises(InputError, match=r"edges\['input->m0'\].in_graph = .* use true or false"):
            self.load(tmp_path, good)

    @pytest.mark.parametrize("field", ["n_layers", "n_heads", "d_model"])
    @pytest.mark.parametrize("value", [-1, 0, 2.5, "4", True])
    def test_sizes_must_be_positive_integers(self, tmp_path, good, field, value):
        good["cfg"][field] = value
        with pytest.raises(InputError, match=rf"cfg.{field}={value!r} is not allowed; use an integer of 1"):
            self.load(tmp_path, good)

    @pytest.mark.parametrize("word", ["NaN", "Infinity", "-Infinity", "1e999"])
    def test_scores_must_be_finite(self, tmp_path, good, word):
        text = json.dumps(good).replace(
            '"input->m0": {"score": ', f'"input->m0": {{"score": {word}, "was": ', 1
        )
        with pytest.raises(InputError, match=r"edges\['input->m0'\].score = .* use a finite number"):
            self.load(tmp_path, None, text)

    def test_a_score_that_is_not_a_number(self, tmp_path, good):
        good["edges"]["input->m0"]["score"] = "0.5"
        with pytest.raises(InputError, match=r"score = '0.5' is not allowed"):
            self.load(tmp_path, good)

    def test_huge_sizes_are_refused_by_what_the_file_holds(self, tmp_path, good):
        good["cfg"]["n_layers"], good["cfg"]["n_heads"] = 10**6, 10**6  # ~1e18 edges: no table is built
        with pytest.raises(InputError, match=r"1000000 layers x 1000000 heads .* holds 463 edges"):
            self.load(tmp_path, good)

    def test_a_smaller_graph_than_the_file_names_the_extra_edge(self, tmp_path, good):
        good["cfg"]["n_layers"] = 3
        with pytest.raises(InputError, match=r"is not an edge of Phi's parallel 3x4 graph"):
            self.load(tmp_path, good)

    def test_other_bad_files(self, tmp_path, good):
        with pytest.raises(InputError, match="is a directory; give a regular file"):
            load_circuit(tmp_path)
        with pytest.raises(InputError, match="no such file"):
            load_circuit(tmp_path / "missing.json")
        with pytest.raises(InputError, match="not valid JSON"):
            self.load(tmp_path, None, "{")
        fifo = tmp_path / "fifo.json"
        os.mkfifo(fifo)  # opened without waiting for a writer, then refused
        with pytest.raises(InputError, match="is a FIFO"):
            load_circuit(fifo)
        with pytest.raises(InputError, match="not a circuit in EAP-IG's JSON layout"):
            self.load(tmp_path, [1, 2])
        good["cfg"]["direction"] = "sideways"
        with pytest.raises(InputError, match="cfg.direction='sideways' is not allowed"):
            self.load(tmp_path, good)


class TestSavingBadCircuits:
    def test_a_wrong_length_mask(self, tmp_path, exact):
        with pytest.raises(InputError, match="circuit must be a bool mask of 463 edges"):
            save_circuit(tmp_path / "c.json", exact, torch.ones(5, dtype=torch.bool))
        with pytest.raises(InputError, match="circuit must be a bool mask of 463 edges"):
            check_mask(exact.graph, torch.ones(N_EDGES))  # what every circuit is checked with

    def test_nan_scores_name_the_edge(self, tmp_path, exact):
        values = exact.values.clone()
        values[7] = float("nan")
        bad = EdgeScores(exact.graph, values, "x", "noising", "logit_diff", 1.0, 0.0, extra={"d_model": 8})
        with pytest.raises(InputError, match=rf"not finite, e.g. {exact.graph.edge_names[7]!r}"):
            save_circuit(tmp_path / "c.json", bad, torch.ones(N_EDGES, dtype=torch.bool))
        assert not (tmp_path / "c.json").exists()

    def test_d_model_is_needed_for_eap_igs_reader(self, tmp_path, exact):
        bare = EdgeScores(exact.graph, exact.values, "x", "noising", "logit_diff", 1.0, 0.0)
        with pytest.raises(InputError, match="pass d_model="):
            save_circuit(tmp_path / "c.json", bare, torch.ones(N_EDGES, dtype=torch.bool))
        path = save_circuit(tmp_path / "c.json", bare, torch.ones(N_EDGES, dtype=torch.bool), d_model=8)
        assert json.loads(path.read_text())["cfg"]["d_model"] == 8


class TestHostileSelection:
    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"top_fraction": 1.5}, "top_fraction=1.5 is not allowed; use a number from 0 to 1"),
            ({"top_fraction": float("nan")}, "top_fraction=nan is not allowed"),
            ({"top_fraction": -0.1}, "top_fraction=-0.1 is not allowed"),
            ({"top_k": 2.5}, "top_k=2.5 is not allowed; use an integer from 0 to 463"),
            ({"top_k": 464}, "top_k=464 is not allowed"),
            ({"top_k": True}, "top_k=True is not allowed"),
            ({"threshold": float("nan")}, "threshold=nan is not allowed; use a finite number"),
        ],
    )
    def test_bad_sizes_are_refused_by_name(self, exact, options, message):
        with pytest.raises(InputError, match=re.escape(message)):
            _unchecked(select)(exact, **options)

    def test_nan_scores_are_refused_not_ranked(self, exact):
        values = exact.values.clone()
        values[3] = float("nan")
        bad = EdgeScores(exact.graph, values, "x", "noising", "logit_diff", 1.0, 0.0)
        with pytest.raises(InputError, match=rf"not finite, e.g. {exact.graph.edge_names[3]!r}"):
            select(bad, top_k=5)

    def test_a_graph_needs_a_layer_and_a_head(self):
        with pytest.raises(InputError, match=r"n_layers=-1 is not allowed"):
            Graph(-1, 4)
        with pytest.raises(InputError, match=r"n_heads=0 is not allowed"):
            Graph(2, 0)


REFERENCE = Path(__file__).parents[2] / "reference" / "eap_ig_graph.py.txt"
EAP_IG_IMPORTS = (
    "from transformer_lens import HookedTransformer, HookedTransformerConfig\n",
    "from .visualization import get_color, generate_random_color\n",
)


@pytest.fixture(scope="module")
def eap_ig_graph():
    """EAP-IG's own `Graph` class (src/eap/graph.py, verbatim), its two imports that need TransformerLens 3
    and matplotlib replaced by stand-ins (neither is used by from_model, from_json or to_json)."""
    source = REFERENCE.read_text()
    for line in EAP_IG_IMPORTS:
        assert source.count(line) == 1, line
        source = source.replace(line, "")
    namespace = {"__name__": "eap_ig_graph"}
    stand_ins = "class HookedTransformer: pass\nclass HookedTransformerConfig: pass\n"
    exec(compile(stand_ins + source, str(REFERENCE), "exec"), namespace)
    return namespace["Graph"]


class TestExchangeWithEapIg:
    """Both directions through EAP-IG's own reader and writer."""

    def test_eap_ig_reads_what_we_write(self, tmp_path, exact, eap_ig_graph):
        circuit = select(exact, top_k=6, greedy=True)
        path = save_circuit(tmp_path / "ours.json", exact, circuit)
        theirs = eap_ig_graph.from_json(str(path))  # was KeyError: 'd_model'
        assert theirs.cfg["d_model"] == 160 and theirs.cfg["n_layers"] == 4 and theirs.cfg["n_heads"] == 4
        assert len(theirs.edges) == N_EDGES and set(theirs.edges) == set(exact.graph.edge_names)
        for position, name in enumerate(exact.graph.edge_names):
            edge = theirs.edges[name]
            assert bool(edge.in_graph) == bool(circuit.mask[position]), name
            assert edge.score.item() == pytest.approx(exact.values[position].item(), rel=1e-6, abs=1e-9)
        assert theirs.count_included_edges() == len(circuit)
        # the same dense layout: their score matrix is ours
        assert torch.allclose(theirs.scores, exact.graph.to_matrix(exact.values))

    def test_we_read_what_eap_ig_writes(self, tmp_path, eap_ig_graph):
        theirs = eap_ig_graph.from_model(
            {"n_layers": 3, "n_heads": 2, "parallel_attn_mlp": True, "d_model": 16}
        )
        g = torch.Generator().manual_seed(0)
        theirs.scores[theirs.real_edge_mask] = torch.randn(int(theirs.real_edge_mask.sum()), generator=g)
        chosen = ["input->a0.h1<q>", "a0.h1->m1", "m1->a2.h0<v>", "a2.h0->logits"]
        for name in chosen:
            theirs.edges[name].in_graph = True
        theirs.to_json(str(tmp_path / "theirs.json"))
        scores, circuit = load_circuit(tmp_path / "theirs.json")
        graph = scores.graph
        assert (graph.n_layers, graph.n_heads, scores.extra["d_model"]) == (3, 2, 16)
        assert set(theirs.edges) == set(graph.edge_names)
        assert list(circuit) == chosen
        assert torch.equal(scores.values, graph.from_matrix(theirs.scores))
        # and back: what we write from it, EAP-IG reads as it wrote it
        save_circuit(tmp_path / "again.json", scores, circuit)
        again = eap_ig_graph.from_json(str(tmp_path / "again.json"))
        assert torch.equal(again.scores, theirs.scores) and torch.equal(again.in_graph, theirs.in_graph)


def test_circuits_are_in_the_public_api():
    import interp
    from interp.methods.circuits import circuit, edge_attribution, edge_patching, graph, scores

    for module, names in [
        (circuit, ["select", "evaluate_circuit", "faithfulness_curve", "save_circuit", "load_circuit"]),
        (edge_attribution, ["eap", "eap_ig"]),
        (edge_patching, ["edge_patch"]),
        (graph, ["Circuit", "Graph"]),
        (scores, ["EdgeScores"]),
    ]:
        for name in names:
            assert getattr(interp, name) is getattr(module, name) and name in interp.__all__, name


def test_the_readme_circuits_block_runs_as_written(toy_model, pairs, tmp_path, monkeypatch):
    """README's "Edge-level circuits" block, on the toy model, in a scratch directory."""
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    section = readme[readme.index("### Edge-level circuits") :]
    block = section[section.index("```python\n") + len("```python\n") : section.index("```\n", 10)]
    assert block.startswith("from interp import ")
    monkeypatch.chdir(tmp_path)
    namespace = {"model": toy_model, "pairs": pairs}
    exec(compile(block, "README.md", "exec"), namespace)
    loaded, ig = namespace["circuit"], namespace["ig"]
    assert 0 < len(loaded) <= 50 and loaded.edges == select(ig, top_k=50, greedy=True).edges
    assert torch.allclose(namespace["scores"].values, ig.values)
    assert (tmp_path / "ioi.json").exists()
