"""The circuits machinery (interp.methods.circuits.circuit) on graphs with feature nodes: a saved feature
circuit loads back with the same graph, edge names, scores and mask; pruning follows the forward's order
between the feature nodes of one layer; circuits are evaluated by node ablation (the whole graph of
every latent is the model, the empty circuit every node ablated) and give faithfulness curves."""

from __future__ import annotations

import json

import pytest
import torch

from interp.base.errors import InputError
from interp.methods.circuits.circuit import (
    circuit_json,
    evaluate_circuit,
    evaluator_for,
    faithfulness_curve,
    load_circuit,
    prune_dangling,
    save_circuit,
    select,
)
from interp.methods.circuits.graph import Circuit, FeatureSite, Graph
from interp.methods.circuits.node_ablation import NodeAblationEvaluator
from interp.methods.circuits.scores import EdgeScores
from interp.methods.features.circuit_evaluation import circuit_metric
from interp.methods.features.circuits import feature_circuit
from methods.features.test_circuits import planted_pairs
from methods.graphs.models import planted_transcoders

ATTN0 = FeatureSite("blocks.0.hook_attn_out", "blocks.0.hook_attn_out", (0, 2))
RESID0 = FeatureSite("blocks.0.hook_resid_post", "blocks.0.hook_resid_post", (1,))
TRANSCODER1 = FeatureSite("blocks.1.hook_mlp_out", "blocks.1.ln1.hook_normalized", (0,), error=False)


def random_scores(graph: Graph, seed: int = 0) -> EdgeScores:
    values = torch.randn(graph.n_edges, generator=torch.Generator().manual_seed(seed))
    return EdgeScores(graph, values, "eap_ig", "denoising", "logit_diff", 2.5, -1.0, extra={"d_model": 16})


def assert_same(loaded: tuple[EdgeScores, Circuit], scores: EdgeScores, circuit: Circuit) -> None:
    got, got_circuit = loaded
    assert got.graph == scores.graph and got.graph.edge_names == scores.graph.edge_names
    assert torch.equal(got.values, scores.values) and torch.equal(got_circuit.mask, circuit.mask)
    assert (got.method, got.direction, got.metric) == (scores.method, scores.direction, scores.metric)
    assert (got.clean, got.corrupted, got.extra["d_model"]) == (scores.clean, scores.corrupted, 16)


class TestJsonRoundTrip:
    def test_a_feature_circuit_loads_back_as_it_was_saved(self, planted_model, tmp_path):
        pairs = planted_pairs(planted_model)
        found = feature_circuit(planted_model, planted_transcoders(planted_model), pairs, top_k=2)
        scores = found.scores
        assert not scores.graph.components and len(scores.graph.features) == 2
        circuit = select(scores, top_k=3, greedy=True)
        assert len(circuit) > 0
        path = save_circuit(tmp_path / "features.json", scores, circuit)
        data = json.loads(path.read_text())
        assert set(data) == {"cfg", "nodes", "edges"} and data["cfg"]["components"] is False
        assert [site["latents"] for site in data["cfg"]["features"]] == [
            list(site.latents) for site in scores.graph.sites
        ]
        assert data["nodes"]["logits"]["in_graph"] and len(data["edges"]) == scores.graph.n_edges
        got, got_circuit = load_circuit(path)
        assert got.graph == scores.graph and got.graph.edge_names == scores.graph.edge_names
        assert torch.equal(got.values, scores.values) and torch.equal(got_circuit.mask, circuit.mask)
        assert (got.clean, got.corrupted) == (scores.clean, scores.corrupted)
        # the feature circuit's own edges are the graph's: one per (source, kept target)
        for source, target, weight in found.top_edges(3):
            name = f"{source}->{'logits' if target == 'metric' else target}"
            assert got.values[got.graph.edge_position(name)].item() == pytest.approx(weight)

    @pytest.mark.parametrize("components", [True, False])
    def test_graphs_of_heads_mlps_and_features(self, tmp_path, components):
        graph = Graph(2, 2, (TRANSCODER1, ATTN0, RESID0), components=components)
        scores = random_scores(graph)
        circuit = select(scores, top_k=7, prune=False)
        path = save_circuit(tmp_path / "mixed.json", scores, circuit)
        assert_same(load_circuit(path), scores, circuit)

    def test_the_head_graph_keeps_eap_igs_cfg(self, tmp_path):
        scores = random_scores(Graph(2, 3))
        circuit = select(scores, top_k=4, prune=False)
        data = circuit_json(scores, circuit)
        assert set(data["cfg"]) == {"n_layers", "n_heads", "parallel_attn_mlp", "d_model"} | {
            "method", "direction", "metric", "clean", "corrupted",
        }  # fmt: skip
        path = save_circuit(tmp_path / "heads.json", scores, circuit)
        assert_same(load_circuit(path), scores, circuit)


class TestBadFeatureFiles:
    @pytest.fixture
    def good(self):
        scores = random_scores(Graph(2, 2, (ATTN0, RESID0), components=False))
        return json.loads(json.dumps(circuit_json(scores, select(scores, top_k=3, prune=False))))

    def load(self, tmp_path, data):
        path = tmp_path / "c.json"
        path.write_text(json.dumps(data))
        return load_circuit(path)

    def test_a_bad_site_is_named(self, tmp_path, good):
        good["cfg"]["features"][0]["writes"] = "blocks.0.attn.hook_z"
        with pytest.raises(InputError, match=r"c.json: writes='blocks.0.attn.hook_z' is not allowed"):
            self.load(tmp_path, good)
        good["cfg"]["features"][0] = {"writes": "blocks.0.hook_attn_out", "latents": 3}
        with pytest.raises(InputError, match="cfg.features entry .* is not allowed"):
            self.load(tmp_path, good)

    def test_huge_feature_sites_are_refused_by_what_the_file_holds(self, tmp_path, good):
        good["cfg"]["features"][1]["latents"] = list(range(10**6))  # ~1e12 table cells: none is built
        with pytest.raises(
            InputError,
            match=r"1000005 nodes and 1000005 inputs \(1000004 feature nodes\), but the file holds 13 edges",
        ):
            self.load(tmp_path, good)

    def test_a_file_of_another_graph_names_the_edge(self, tmp_path, good):
        good["cfg"]["features"][0]["latents"] = [0]
        with pytest.raises(
            InputError, match=r"is not an edge of Phi's parallel 2x2 graph with these feature"
        ):
            self.load(tmp_path, good)
        good["cfg"]["features"][0]["latents"] = [0, 1, 2]
        with pytest.raises(InputError, match=r"lacks 3 edges of a 2x2 graph with these feature nodes"):
            self.load(tmp_path, good)


class TestPruning:
    def test_a_path_through_two_sites_of_one_layer_is_kept(self):
        """attn_out's latent feeds resid_post's, both in layer 0: ordering edges by layer alone would
        see resid_post's edge to the logits after attn_out's edge into it, and drop the whole path."""
        graph = Graph(1, 1, (ATTN0, RESID0), components=False)
        path = ["input->blocks.0.hook_attn_out[2]", "blocks.0.hook_attn_out[2]->blocks.0.hook_resid_post[1]"]
        path.append("blocks.0.hook_resid_post[1]->logits")
        chosen = torch.zeros(graph.n_edges, dtype=torch.bool)
        chosen[[graph.edge_position(name) for name in path]] = True
        assert list(Circuit(graph, prune_dangling(graph, chosen))) == path
        dangling = chosen.clone()
        dangling[graph.edge_position("input->blocks.0.hook_attn_out[0]")] = True  # goes nowhere
        assert list(Circuit(graph, prune_dangling(graph, dangling))) == path


class TestNodeAblation:
    """A feature graph's circuits evaluated by ablating the nodes they leave out (node_ablation)."""

    @pytest.fixture(scope="class")
    def setting(self, planted_model):
        pairs = planted_pairs(planted_model)
        tcs = planted_transcoders(planted_model)
        every = feature_circuit(planted_model, tcs, pairs)  # every latent a node of the graph
        kept = feature_circuit(planted_model, tcs, pairs, top_k=2)  # the planted path and the errors
        return pairs, tcs, every, kept

    @pytest.mark.parametrize("mode", ["counterfactual", "mean", "zero"])
    def test_the_whole_graph_is_the_model(self, planted_model, setting, mode):
        pairs, tcs, every, _ = setting
        graph = every.scores.graph
        evaluate = evaluator_for(planted_model, pairs, "logit_diff", mode, graph, tcs)
        full = evaluate(torch.ones(graph.n_edges, dtype=torch.bool))
        assert torch.allclose(full, evaluate.full(), atol=1e-4)
        assert evaluate.full().mean().item() == pytest.approx(every.clean, abs=1e-5)

    def test_the_empty_circuit_is_every_node_ablated(self, planted_model, setting):
        """Equal to the independent node ablation of circuit_evaluation (corrupted values), for the empty
        circuit, for a pruned one, and for the whole graph of the kept nodes."""
        pairs, tcs, _, kept = setting
        graph = kept.scores.graph
        evaluate = evaluator_for(planted_model, pairs, "logit_diff", "counterfactual", graph, tcs)
        empty = evaluate.empty()
        assert torch.allclose(empty, circuit_metric(planted_model, tcs, pairs, []), atol=1e-5)
        assert abs(empty.mean().item() - kept.clean) > 0.5  # the ablation does change the metric
        for circuit in (
            select(kept.scores, top_k=3),
            Circuit(graph, torch.ones(graph.n_edges, dtype=torch.bool)),
        ):
            nodes = sorted(circuit.nodes - {"input", "logits"})
            assert torch.allclose(
                evaluate(circuit), circuit_metric(planted_model, tcs, pairs, nodes), atol=1e-5
            )
        assert torch.allclose(
            evaluate_circuit(planted_model, pairs, Circuit(graph, torch.zeros(graph.n_edges, dtype=torch.bool)),
                             dictionaries=tcs), empty)  # fmt: skip

    def test_the_faithfulness_curve_of_the_planted_path(self, planted_model, setting):
        pairs, tcs, _, kept = setting
        curve = faithfulness_curve(
            planted_model, pairs, kept.scores, fractions=(0.0, 0.5, 1.0), dictionaries=tcs
        )
        assert curve.faithfulness[0] == pytest.approx(0.0, abs=1e-6)  # the empty circuit
        assert curve.faithfulness[-1] == pytest.approx(1.0, abs=0.02)  # the path carries the behaviour
        assert curve.full == pytest.approx(kept.clean, abs=1e-5)

    def test_mean_over_names_the_prompts_averaged(self, planted_model, setting):
        """Node ablation's mean is over the corrupted prompts by default, circuit_metric's over the clean
        ones; each takes the other's with mean_over, and then the two agree."""
        pairs, tcs, _, kept = setting
        graph = kept.scores.graph
        circuit = select(kept.scores, top_k=3)
        nodes = sorted(circuit.nodes - {"input", "logits"})
        for side in ("corrupted", "clean"):
            evaluate = evaluator_for(planted_model, pairs, "logit_diff", "mean", graph, tcs, side)
            for chosen, names in ((Circuit(graph, torch.zeros(graph.n_edges, dtype=torch.bool)), []),
                                  (circuit, nodes)):  # fmt: skip
                reference = circuit_metric(planted_model, tcs, pairs, names, ablation="mean", mean_over=side)
                assert torch.allclose(evaluate(chosen), reference, atol=1e-5)
        default = evaluator_for(planted_model, pairs, "logit_diff", "mean", graph, tcs).empty()
        by_corrupted = circuit_metric(planted_model, tcs, pairs, [], ablation="mean", mean_over="corrupted")
        by_clean = circuit_metric(planted_model, tcs, pairs, [], ablation="mean")
        assert torch.allclose(default, by_corrupted, atol=1e-5)
        assert (by_clean - by_corrupted).abs().max() > 1e-3  # the two means differ here
        with pytest.raises(InputError, match="mean_over='clean' is read only with mode='mean'"):
            evaluator_for(planted_model, pairs, "logit_diff", "zero", graph, tcs, "clean")
        with pytest.raises(InputError, match="mean_over='clean' is read only with ablation='mean'"):
            circuit_metric(planted_model, tcs, pairs, [], mean_over="clean")

    def test_graphs_it_cannot_evaluate_are_refused(self, planted_model, setting):
        pairs, tcs, _, kept = setting
        mixed = Graph(2, 2, kept.scores.graph.features)
        with pytest.raises(InputError, match="feature nodes alone"):
            evaluator_for(planted_model, pairs, "logit_diff", "mean", mixed, tcs)
        with pytest.raises(InputError, match="mode='resample' is not allowed"):
            NodeAblationEvaluator(planted_model, pairs, kept.scores.graph, "logit_diff", "resample", tcs)
        with pytest.raises(InputError, match="no dictionary given reads"):
            evaluator_for(planted_model, pairs, "logit_diff", "mean", kept.scores.graph, tcs[:1])
