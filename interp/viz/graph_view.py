"""The attribution graph view: an offline interactive SVG of a graph in circuit-tracer's JSON layout.

Rows are layers (the prompt's tokens at the bottom, the logits on top), columns positions; a feature is
a circle, an error node a square, tokens and logits rounded boxes. A link's colour is its weight's sign
(`interp.viz.colours`: blue positive, red negative), its width |weight|. Hover a node for its details
(activation, cumulative influence, strongest links in and out); click it to light the paths through it;
the slider prunes to the nodes within a cumulative influence share; a supernode's button lights its
members. Everything travels with the page (no server, no network), so a notebook output or a report
file keeps working offline. It reads our files and circuit-tracer's alike (`interp.methods.graphs.graph_json`).
"""

from __future__ import annotations

import uuid

from interp.methods.graphs.graph_json import GraphFile
from interp.viz.embedded import EmbeddedView

KIND = {
    "cross layer transcoder": "feature",
    "mlp reconstruction error": "error",
    "embedding": "token",
    "logit": "logit",
}


NOT_DISPLAYED = (
    "Attribution graph (an interactive widget): its view was not saved with this notebook. Run the cell in "
    "JupyterLab to display it."
)


def _label(node: dict, kind: str, tokens: list[str]) -> str:
    if kind == "feature":
        return f"L{node['layer']} F{node['feature']}"
    if kind == "error":
        return f"err L{node['layer']}"
    if kind == "token":
        pos = node["ctx_idx"]
        return tokens[pos] if 0 <= pos < len(tokens) else f"token @{pos}"
    return node.get("clerp") or f"logit {node['feature']}"


class GraphView(EmbeddedView):
    """The view of one graph file (its JSON object, or `read_graph_json`'s result); displays itself as a
    widget in notebooks and as HTML in reports (`interp.viz.embedded`). `cards`: node id -> {name: list of strings} shown
    with the node on hover (e.g. `interp.methods.graphs.promoted.promoted_tokens`)."""

    SCRIPT, RENDER, ROOT_CLASS = "graph_view.js", "interpGraphView", "interp-graph-root"
    LABEL, NOT_DISPLAYED = "Attribution graph", NOT_DISPLAYED

    def __init__(
        self, graph: dict | GraphFile, title: str = "attribution graph", cards: dict[str, dict] | None = None
    ):
        if isinstance(graph, GraphFile):
            metadata, qparams, nodes, links = graph.metadata, graph.qparams, graph.nodes, graph.links
        else:
            metadata, qparams = graph["metadata"], graph.get("qParams", {})
            nodes, links = graph["nodes"], graph["links"]
        tokens = [str(t) for t in metadata["prompt_tokens"]]
        logit_layers = [int(n["layer"]) for n in nodes if n["feature_type"] == "logit"]
        n_layers = (
            (logit_layers[0] - 1) if logit_layers else int(metadata.get("interp", {}).get("n_layers", 1))
        )
        shown = []
        for node in nodes:
            kind = KIND[node["feature_type"]]
            row = -1 if kind == "token" else n_layers if kind == "logit" else int(node["layer"])
            shown.append(
                {
                    "id": node["node_id"],
                    "kind": kind,
                    "row": row,
                    "pos": int(node["ctx_idx"]),
                    "label": _label(node, kind, tokens),
                    "influence": node.get("influence"),
                    "activation": node.get("activation"),
                    "clerp": node.get("clerp") or "",
                    "prob": node.get("token_prob") or 0.0,
                    "card": {
                        str(k): [str(v) for v in values]
                        for k, values in (cards or {}).get(node["node_id"], {}).items()
                    },
                }
            )
        self.data = {
            "title": title,
            "tokens": tokens,
            "n_layers": n_layers,
            "nodes": shown,
            "links": [
                {"s": link["source"], "t": link["target"], "w": float(link["weight"])} for link in links
            ],
            "supernodes": [list(map(str, group)) for group in qparams.get("supernodes", []) if group],
        }
        self.id = f"interp-graph-{uuid.uuid4().hex[:12]}"
