"""A pruned attribution graph in circuit-tracer's JSON layout (`create_graph_files`), both ways.

The file is one JSON object, as circuit-tracer's frontend (and Neuronpedia's) reads it:

- `metadata`: `slug`, `scan`, `transcoder_list`, `prompt_tokens` (newlines, tabs and carriage returns
  shown as ⏎ → ↵), `prompt`, `node_threshold`; ours adds `interp` (the edge threshold, the graph's
  replacement and completeness scores, the number of layers), which their reader ignores;
- `qParams`: `pinnedIds`, `supernodes` (lists `[name, node_id, ...]`), `linkType`, `clickedId`, `sg_pos`;
- `nodes`: each with `node_id`, `feature`, `layer` (a string), `ctx_idx` (the position), `feature_type`,
  `token_prob`, `is_target_logit`, `run_idx`, `reverse_ctx_idx`, `jsNodeId`, `clerp`, `influence` (the
  node's cumulative influence share) and `activation`. Ids: a feature `{layer}_{feature}_{pos}`, an error
  node `0_{layer}_{pos}`, a token `E_{token id}_{pos}`, a logit `{n_layers + 1}_{token id}_{pos}`;
- `links`: `source`, `target` (node ids) and `weight` (the direct effect), one per kept edge.

circuit-tracer's error ids can coincide with a layer-0 feature's (`0_1_5` is feature 1 of layer 0 at
position 5 and the error node of layer 1 there): a graph holding both cannot be written in this layout
without its links becoming ambiguous, so writing it is refused, naming the nodes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from interp.base.errors import FileKindError, InputError
from interp.base.files import read_json, write_atomic
from interp.methods.graphs.attribution import AttributionGraph
from interp.methods.graphs.pruning import PrunedGraph, graph_scores, prune_graph

FEATURE_TYPES = ("cross layer transcoder", "mlp reconstruction error", "embedding", "logit")
NODE_FIELDS = (
    "node_id", "feature", "layer", "ctx_idx", "feature_type", "token_prob", "is_target_logit", "run_idx",
    "reverse_ctx_idx", "jsNodeId", "clerp", "influence", "activation",
)  # fmt: skip
MAX_BYTES = 512 * 2**20


def process_token(token: str) -> str:
    """A token as circuit-tracer shows it: newline ⏎, tab →, carriage return ↵."""
    return token.replace("\n", "⏎").replace("\t", "→").replace("\r", "↵")


def _node(graph: AttributionGraph, index: int, cumulative: float) -> dict:
    kind = graph.node_kind(index)
    start = graph.bounds()[kind].start
    node = dict.fromkeys(NODE_FIELDS)
    node.update(
        token_prob=0.0, is_target_logit=False, run_idx=0, reverse_ctx_idx=0, clerp="", influence=cumulative
    )
    if kind == "feature":
        layer, pos, feature = graph.active[index].tolist()
        node.update(
            node_id=f"{layer}_{feature}_{pos}", feature=feature, layer=str(layer), ctx_idx=pos,
            feature_type=FEATURE_TYPES[0], jsNodeId=f"{layer}_{feature}-0",
            activation=float(graph.activations[index]),
        )  # fmt: skip
    elif kind == "error":
        layer, pos = divmod(index - start, graph.n_pos)
        node.update(
            node_id=f"0_{layer}_{pos}", feature=-1, layer=str(layer), ctx_idx=pos,
            feature_type=FEATURE_TYPES[1], jsNodeId=f"{layer}_{pos}-0",
        )  # fmt: skip
    elif kind == "token":
        pos = index - start
        vocab = int(graph.tokens[pos])
        node.update(
            node_id=f"E_{vocab}_{pos}", feature=pos, layer="E", ctx_idx=pos, feature_type=FEATURE_TYPES[2],
            jsNodeId=f"E_{vocab}-{pos}",
        )  # fmt: skip
    else:
        rank = index - start
        vocab, pos = int(graph.logit_tokens[rank]), graph.n_pos - 1
        prob = float(graph.logit_probabilities[rank])
        layer = str(graph.n_layers + 1)
        node.update(
            node_id=f"{layer}_{vocab}_{pos}", feature=vocab, layer=layer, ctx_idx=pos, feature_type=FEATURE_TYPES[3],
            token_prob=prob, is_target_logit=rank == 0, jsNodeId=f"L_{vocab}-{pos}",
            clerp=f'Output "{process_token(graph.logit_strings[rank])}" (p={prob:.3f})', influence=None,
        )  # fmt: skip
    return node


def graph_to_json(
    graph: AttributionGraph,
    pruned: PrunedGraph | None = None,
    *,
    slug: str = "graph",
    scan: str | None = None,
    supernodes: list[list[str]] | None = None,
) -> dict:
    """The graph, pruned by `pruned` (default: `prune_graph(graph)`), as circuit-tracer's JSON object."""
    pruned = prune_graph(graph) if pruned is None else pruned
    kept = pruned.node_mask.nonzero()[:, 0].tolist()
    nodes = {index: _node(graph, index, float(pruned.cumulative[index])) for index in kept}
    targets, sources = pruned.edge_mask.nonzero().T.tolist() if pruned.edge_mask.any() else ([], [])
    links = [
        {"source": nodes[s]["node_id"], "target": nodes[t]["node_id"], "weight": float(graph.adjacency[t, s])}
        for t, s in zip(targets, sources, strict=True)
        if s in nodes and t in nodes
    ]
    connected = {link["source"] for link in links} | {link["target"] for link in links}
    used = [n for n in nodes.values() if n["node_id"] in connected or n["feature_type"] in FEATURE_TYPES[2:]]
    _refuse_clashes(used)
    scores = graph_scores(graph)
    metadata = {
        "slug": slug,
        "scan": scan if scan is not None else "custom",
        "transcoder_list": list(graph.transcoders),
        "prompt_tokens": [process_token(t) for t in graph.token_strings],
        "prompt": graph.prompt,
        "node_threshold": pruned.node_threshold,
        "interp": {
            "edge_threshold": pruned.edge_threshold,
            "replacement_score": scores.replacement,
            "completeness_score": scores.completeness,
            "n_layers": graph.n_layers,
        },
    }
    qparams = {
        "pinnedIds": [],
        "supernodes": supernodes or [],
        "linkType": "both",
        "clickedId": "",
        "sg_pos": "",
    }
    return {"metadata": metadata, "qParams": qparams, "nodes": used, "links": links}


def node_indices(graph: AttributionGraph, node_ids: list[str]) -> list[int]:
    """The graph's nodes of circuit-tracer node ids (e.g. a supernode's members, to intervene on them)."""
    ids = {_node(graph, index, 0.0)["node_id"]: index for index in range(graph.n_nodes)}
    missing = [node_id for node_id in node_ids if node_id not in ids]
    if missing:
        raise InputError(f"node ids {missing} are not nodes of this graph.")
    return [ids[node_id] for node_id in node_ids]


def _refuse_clashes(nodes: list[dict]) -> None:
    seen: dict[str, str] = {}
    for node in nodes:
        other = seen.setdefault(node["node_id"], node["feature_type"])
        if other is not node["feature_type"]:
            raise InputError(
                f"node id {node['node_id']!r} names both a {other} and a {node['feature_type']} node: "
                "circuit-tracer's layout gives a layer-0 feature and an error node the same id here, so its "
                "links would be ambiguous. Prune harder (a higher node threshold) or keep the graph in Python."
            )


def write_graph_json(
    graph: AttributionGraph, path: str | Path, pruned: PrunedGraph | None = None, **kwargs
) -> Path:
    """Write `graph_to_json(graph, pruned, **kwargs)` to `path` (atomically)."""
    return write_atomic(path, json.dumps(graph_to_json(graph, pruned, **kwargs), indent=1, allow_nan=False))


@dataclass
class GraphFile:
    """A graph file read back: circuit-tracer's four parts, checked."""

    metadata: dict
    qparams: dict
    nodes: list[dict]
    links: list[dict]
    path: str = ""
    by_id: dict[str, dict] = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        """Layers of the model: a logit node's layer is n_layers + 1."""
        logits = [int(n["layer"]) for n in self.nodes if n["feature_type"] == "logit"]
        return (
            logits[0] - 1
            if logits
            else 1 + max((int(n["layer"]) for n in self.nodes if n["layer"] != "E"), default=-1)
        )


def _fail(path, message: str):
    raise InputError(f"graph file {path}: {message}")


def read_graph_json(path: str | Path) -> GraphFile:
    """A graph file in circuit-tracer's layout (ours or theirs), every part checked: a missing part or
    field, a link to a node that is not there or a weight that is not a finite number is an error."""
    try:
        data = read_json(path, MAX_BYTES, what="graph file")
    except FileNotFoundError:
        raise InputError(f"graph file {path} does not exist.") from None
    except FileKindError as error:
        raise InputError(str(error)) from None
    if not isinstance(data, dict):
        _fail(
            path, f"is a JSON {type(data).__name__}, not an object with metadata, qParams, nodes and links."
        )
    missing = [key for key in ("metadata", "nodes", "links") if key not in data]
    if missing:
        _fail(
            path,
            f"has no {', '.join(missing)} (circuit-tracer's layout has metadata, qParams, nodes, links).",
        )
    metadata, nodes, links = data["metadata"], data["nodes"], data["links"]
    if not isinstance(metadata, dict) or not isinstance(metadata.get("prompt_tokens"), list):
        _fail(path, "metadata must be an object with a prompt_tokens list.")
    if not isinstance(nodes, list) or not isinstance(links, list):
        _fail(path, "nodes and links must be lists.")
    by_id: dict[str, dict] = {}
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            _fail(path, f"nodes[{i}] is not an object.")
        absent = [key for key in ("node_id", "feature_type", "layer", "ctx_idx") if key not in node]
        if absent:
            _fail(path, f"nodes[{i}] has no {', '.join(absent)}.")
        if node["feature_type"] not in FEATURE_TYPES:
            _fail(
                path,
                f"nodes[{i}] has feature_type {node['feature_type']!r}; known: {', '.join(FEATURE_TYPES)}.",
            )
        if not isinstance(node["ctx_idx"], int) or isinstance(node["ctx_idx"], bool):
            _fail(path, f"nodes[{i}].ctx_idx must be an integer position, not {node['ctx_idx']!r}.")
        if node["node_id"] in by_id:
            _fail(path, f"node id {node['node_id']!r} is given twice (nodes[{i}]).")
        by_id[node["node_id"]] = node
    for i, link in enumerate(links):
        if not isinstance(link, dict) or not {"source", "target", "weight"} <= set(link):
            _fail(path, f"links[{i}] must be an object with source, target and weight.")
        for end in ("source", "target"):
            if link[end] not in by_id:
                _fail(path, f"links[{i}].{end} {link[end]!r} is not a node of the file.")
        weight = link["weight"]
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            _fail(path, f"links[{i}].weight must be a finite number, not {weight!r}.")
    qparams = data.get("qParams", {})
    if not isinstance(qparams, dict):
        _fail(path, "qParams must be an object.")
    return GraphFile(metadata, qparams, nodes, links, str(path), by_id)
