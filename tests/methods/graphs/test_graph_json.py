"""circuit-tracer's graph JSON: ours written field for field as theirs, read back, theirs read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from interp.base.errors import InputError
from interp.methods.graphs.attribution import AttributionGraph, attribution_graph
from interp.methods.graphs.graph_json import _node, graph_to_json, read_graph_json, write_graph_json
from interp.methods.graphs.pruning import prune_graph
from methods.graphs.models import ANSWER, PLANTED_PROMPT, planted_transcoders

THEIRS = Path(__file__).parent / "data" / "circuit_tracer_graph.json"


def their_graph_as_ours() -> AttributionGraph:
    """The graph of the circuit-tracer fixture, as an AttributionGraph (2 layers, 2 positions)."""
    n = 2 + 2 * 2 + 2 + 1
    return AttributionGraph(
        tokens=torch.tensor([464, 3797]),
        token_strings=["The", " cat\n"],
        active=torch.tensor([[0, 1, 7], [1, 1, 12]]),
        activations=torch.tensor([2.5, 1.25]),
        logit_tokens=torch.tensor([318]),
        logit_strings=[" sat"],
        logit_probabilities=torch.tensor([0.625]),
        adjacency=torch.zeros(n, n),
        node_inputs=torch.zeros(n),
        bias=torch.zeros(n),
        n_layers=2,
        prompt="The cat\n",
    )


def test_their_file_is_read():
    graph = read_graph_json(THEIRS)
    assert graph.n_layers == 2 and len(graph.nodes) == 6 and len(graph.links) == 5
    assert graph.metadata["prompt_tokens"] == ["The", " cat⏎"]
    assert graph.qparams["supernodes"] == [["subject", "0_7_1", "1_12_1"]]
    assert graph.by_id["3_318_1"]["clerp"] == 'Output " sat" (p=0.625)'


def test_our_nodes_are_theirs_field_for_field():
    """Each kind of node: the same fields, ids and values as circuit-tracer's (influence as given)."""
    theirs = {node["node_id"]: node for node in json.loads(THEIRS.read_text())["nodes"]}
    graph = their_graph_as_ours()
    indices = {"0_7_1": 0, "1_12_1": 1, "0_1_0": 2 + 2, "E_464_0": 6, "E_3797_1": 7, "3_318_1": 8}
    for node_id, index in indices.items():
        ours = _node(
            graph, index, theirs[node_id]["influence"] if theirs[node_id]["influence"] is not None else 0.0
        )
        if ours["feature_type"] == "logit":
            ours["influence"] = theirs[node_id]["influence"]
        assert list(ours) == list(theirs[node_id]) and ours == theirs[node_id], node_id


def test_a_graph_is_written_and_read_back(planted_model, tmp_path):
    graph = attribution_graph(planted_model, PLANTED_PROMPT, planted_transcoders(planted_model))
    graph.transcoders = ["layer0", "layer1"]
    pruned = prune_graph(graph)
    path = write_graph_json(graph, tmp_path / "g.json", pruned, slug="planted")
    back = read_graph_json(path)
    assert back.metadata["slug"] == "planted" and back.metadata["transcoder_list"] == ["layer0", "layer1"]
    assert back.metadata["node_threshold"] == 0.8 and back.metadata["interp"]["edge_threshold"] == 0.98
    assert 0 < back.metadata["interp"]["replacement_score"] <= 1
    # every kept edge once, with its weight
    expected = {}
    ids = {i: _node(graph, i, 0.0)["node_id"] for i in range(graph.n_nodes)}
    for t, s in pruned.edge_mask.nonzero().tolist():
        expected[(ids[s], ids[t])] = float(graph.adjacency[t, s])
    assert {(link["source"], link["target"]): link["weight"] for link in back.links} == expected
    logits = [n for n in back.nodes if n["feature_type"] == "logit"]
    assert [n["node_id"] for n in logits] == [f"3_{ANSWER}_{len(PLANTED_PROMPT) - 1}"] and logits[0][
        "is_target_logit"
    ]
    assert sum(n["feature_type"] == "embedding" for n in back.nodes) == len(PLANTED_PROMPT)


def test_clashing_ids_are_refused():
    """Feature 1 of layer 0 at position 0 and the error node of layer 1 at position 0 are both `0_1_0`."""
    graph = their_graph_as_ours()
    graph.active = torch.tensor([[0, 0, 1], [1, 1, 12]])
    error_l1_p0 = 2 + 1 * 2 + 0
    logit = graph.n_nodes - 1
    graph.adjacency[logit, 0] = 1.0
    graph.adjacency[logit, error_l1_p0] = 1.0
    graph.adjacency[0, 6] = 1.0
    with pytest.raises(InputError, match="'0_1_0' names both"):
        graph_to_json(graph, prune_graph(graph, 1.0, 1.0))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", "not an object"),
        ('{"metadata": {"prompt_tokens": []}, "nodes": []}', "has no links"),
        (
            '{"metadata": {"prompt_tokens": []}, "nodes": [{"node_id": "a"}], "links": []}',
            "nodes\\[0\\] has no",
        ),
        (
            '{"metadata": {"prompt_tokens": []}, "nodes": [], "links": [{"source": "x", "target": "y", "weight": 1}]}',
            "links\\[0\\].source 'x' is not a node",
        ),
        ("{", "not valid JSON"),
    ],
)
def test_damaged_files_are_errors_naming_the_part(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_graph_json(path)


def test_a_supernodes_ids_name_graph_nodes(planted_model):
    """Members of a supernode (by node id, as the JSON and its frontend name them) back to graph nodes."""
    from interp.methods.graphs.graph_json import node_indices

    graph = attribution_graph(planted_model, PLANTED_PROMPT, planted_transcoders(planted_model))
    last = len(PLANTED_PROMPT) - 1
    from methods.graphs.models import F0, F1

    indices = node_indices(graph, [f"0_{F0}_{last}", f"1_{F1}_{last}", f"3_{ANSWER}_{last}"])
    assert [graph.label(i) for i in indices] == [
        f"L0 F{F0} @{last}",
        f"L1 F{F1} @{last}",
        graph.label(graph.n_nodes - 1),
    ]
    with pytest.raises(InputError, match="not nodes of this graph"):
        node_indices(graph, ["7_7_7"])
