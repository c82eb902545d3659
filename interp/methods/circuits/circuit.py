"""Circuits: choose edges from scores, run the model through only those edges, measure faithfulness.

- `select`: the top k (or a fraction) of edges by importance or |importance| (`EdgeScores.importance`:
  how far an edge moves the metric towards the clean behaviour, so signed ranking means the same in
  both directions), a threshold, or a greedy connected
  selection that grows the circuit backwards from the logits, always taking the best edge into a node
  already in it; `prune` drops edges that are not on a path from `input` to `logits`.
- `evaluate_circuit`: the clean prompts run with every receiver input built from the senders the
  circuit keeps (their outputs in this same run) and, for every other edge, the sender's ablated value:
  its output on the corrupted prompts (`counterfactual`), its mean over the corrupted prompts and
  positions (`mean`), or zero (`zero`). The full graph gives the clean metric and, with
  `counterfactual`, the empty graph the corrupted one (both tested).
- `faithfulness_curve`: f = (m(C) - m(empty)) / (m(full) - m(empty)) for circuits of the top
  0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50 and 100 % of edges, and MIB's summaries: CPR, the area under the
  curve (signed scores), and CMD, the area between the curve and 1 (|scores|), both by the trapezoid
  rule over the fraction of edges, as in the MIB circuit-localisation track.
- `save_circuit` / `load_circuit`: EAP-IG's JSON layout (`cfg`, `nodes` with `in_graph`, `edges` with
  `score` and `in_graph`), so a circuit moves between this workbench and the EAP-IG/MIB tools.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import einops
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.base.errors import InputError
from interp.base.files import write_atomic
from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptPairs
from interp.engine.receivers import run_receivers
from interp.methods.circuits.edge_patching import sender_outputs
from interp.methods.circuits.graph import Graph
from interp.methods.circuits.scores import EdgeScores
from interp.methods.contrastive import contrast
from interp.model.loading import HookedPhi

Mode = Literal["counterfactual", "mean", "zero"]
MIB_FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


# --- selection ---


def select(
    scores: EdgeScores,
    *,
    top_k: int | None = None,
    top_fraction: float | None = None,
    threshold: float | None = None,
    absolute: bool = True,
    greedy: bool = False,
    prune: bool = True,
) -> Bool[Tensor, " edge"]:
    """Edges in the circuit (a mask over `scores.edges`); give exactly one of top_k, top_fraction, threshold."""
    given = [
        name
        for name, value in (("top_k", top_k), ("top_fraction", top_fraction), ("threshold", threshold))
        if value is not None
    ]
    if len(given) != 1:
        raise InputError(f"give exactly one of top_k, top_fraction and threshold (got {given or 'none'})")
    graph = scores.graph
    ranking = scores.importance().abs() if absolute else scores.importance()
    if threshold is not None:
        chosen = ranking >= threshold
        return prune_dangling(graph, chosen) if prune else chosen
    k = top_k if top_k is not None else int(top_fraction * graph.n_edges)
    if not 0 <= k <= graph.n_edges:
        raise InputError(f"top_k={k} is not allowed; this graph has {graph.n_edges} edges")
    if greedy:
        chosen = _greedy(graph, ranking, k)
    else:
        chosen = torch.zeros(graph.n_edges, dtype=torch.bool)
        chosen[ranking.argsort(descending=True, stable=True)[:k]] = True
    return prune_dangling(graph, chosen) if prune else chosen


def _greedy(graph: Graph, ranking: Tensor, k: int) -> Tensor:
    """Grow from the logits: repeatedly take the best edge whose receiver's node is already in the circuit."""
    into: dict[str, list[int]] = {}
    for position, node in enumerate(graph.edge_receiver_nodes):
        into.setdefault(node, []).append(position)
    chosen = torch.zeros(graph.n_edges, dtype=torch.bool)
    nodes, frontier = {"logits"}, list(into["logits"])
    while int(chosen.sum()) < k and frontier:
        best = max(frontier, key=lambda p: ranking[p].item())
        frontier.remove(best)
        chosen[best] = True
        sender = graph.edge_senders[best]
        if sender not in nodes:
            nodes.add(sender)
            frontier += [p for p in into.get(sender, []) if not chosen[p]]
    return chosen


def prune_dangling(graph: Graph, chosen: Bool[Tensor, " edge"]) -> Bool[Tensor, " edge"]:
    """Keep only edges on a path from `input` to `logits` (through chosen edges)."""
    senders, receivers, layers = graph.edge_senders, graph.edge_receiver_nodes, graph.edge_sender_layers
    chosen = chosen.clone()
    while True:
        live = chosen.nonzero().flatten().tolist()
        reached, feeds = {"input"}, {"logits"}
        for p in sorted(live, key=lambda p: layers[p]):
            if senders[p] in reached:
                reached.add(receivers[p])
        for p in sorted(live, key=lambda p: -layers[p]):
            if receivers[p] in feeds:
                feeds.add(senders[p])
        keep = torch.tensor([senders[p] in reached and receivers[p] in feeds for p in live], dtype=torch.bool)
        if keep.all():
            return chosen
        chosen[torch.tensor(live)[~keep]] = False


# --- evaluation ---


def evaluate_circuit(
    model: HookedPhi,
    pairs: PromptPairs,
    circuit: Bool[Tensor, " edge"],
    metric: MetricKind | Metric = "logit_diff",
    *,
    mode: Mode = "counterfactual",
) -> Float[Tensor, " batch"]:
    """Per-prompt metric of the clean prompts run through only the circuit's edges (see the module docstring)."""
    return CircuitEvaluator(model, pairs, metric, mode)(circuit)


class CircuitEvaluator:
    """The clean and corrupted runs and the ablated sender values, computed once for many circuits."""

    def __init__(self, model: HookedPhi, pairs: PromptPairs, metric: MetricKind | Metric, mode: Mode):
        if mode not in ("counterfactual", "mean", "zero"):
            raise InputError(f"mode={mode!r} is not allowed; use 'counterfactual', 'mean' or 'zero'.")
        self.core = contrast(model, pairs, metric, direction="noising")
        w = self.core.weights
        self.graph = Graph.of(w.n_layers, w.n_heads)
        ablated = [sender_outputs(w, g.corrupted) for g in self.core.groups]
        if mode == "mean":
            total = sum(a.float().sum(dim=(1, 2)) for a in ablated)
            means = (total / sum(a.shape[1] * a.shape[2] for a in ablated)).to(ablated[0].dtype)
            ablated = [
                einops.repeat(
                    means, "sender d_model -> sender batch pos d_model", batch=a.shape[1], pos=a.shape[2]
                )
                for a in ablated
            ]
        elif mode == "zero":
            ablated = [torch.zeros_like(a) for a in ablated]
        self.ablated = ablated

    def __call__(self, circuit: Bool[Tensor, " edge"]) -> Float[Tensor, " batch"]:
        graph, core = self.graph, self.core
        if circuit.shape != (graph.n_edges,) or circuit.dtype != torch.bool:
            raise InputError(
                f"circuit must be a bool mask of {graph.n_edges} edges, got {circuit.dtype} {tuple(circuit.shape)}"
            )
        mask = graph.to_matrix(circuit.float()).to(core.clean_logits.device)  # sender receiver
        values = torch.zeros(len(core.pairs))
        for group, ablated in zip(core.groups, self.ablated, strict=True):
            logits = _run_circuit(graph, core.weights, group.clean.resid_pre[0], mask, ablated)
            values[group.index] = core.measure(logits, group.index).float().cpu()
        return values


@torch.no_grad()
def _run_circuit(graph: Graph, w, embed: Tensor, mask: Tensor, ablated: Tensor) -> Tensor:
    def inputs(layer: int, resid: Tensor, outputs: list[Tensor]) -> Tensor:
        n = graph.senders_before(layer)
        block = graph.block_receivers(layer) if layer < w.n_layers else slice(graph.n_backward - 1, None)
        kept = torch.stack(outputs[:n]) - ablated[:n]  # sender batch pos d_model
        biases = sum((w.b_O[layer_before] for layer_before in range(layer)), torch.zeros_like(embed[0, 0]))
        base = ablated[:n].sum(0) + biases  # every edge ablated
        return base[:, None] + einops.einsum(
            kept,
            mask[:n, block].to(kept.dtype),
            "sender batch pos d_model, sender receiver -> batch receiver pos d_model",
        )

    logits, _, _ = run_receivers(w, embed, inputs)
    return logits


@dataclass
class FaithfulnessCurve:
    """Faithfulness of circuits of growing size, and MIB's area summaries (see the module docstring)."""

    fractions: list[float]
    n_edges: list[int]
    faithfulness: list[float]
    full: float  # m(full model)
    empty: float  # m(empty circuit)
    absolute: bool
    mode: str

    @property
    def area_under(self) -> float:
        """CPR when the edges were ranked by signed score: the trapezoid area under the curve."""
        return trapezoid(self.fractions, self.faithfulness)

    @property
    def area_from_one(self) -> float:
        """CMD when the edges were ranked by |score|: the trapezoid area of |1 - faithfulness|."""
        return trapezoid(self.fractions, [abs(1 - f) for f in self.faithfulness])


def trapezoid(x: list[float], y: list[float]) -> float:
    """The area under y(x) by the trapezoid rule, as MIB computes CPR and CMD."""
    return sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(len(x) - 1))


def faithfulness_curve(
    model: HookedPhi,
    pairs: PromptPairs,
    scores: EdgeScores,
    metric: MetricKind | Metric = "logit_diff",
    *,
    fractions: tuple[float, ...] = MIB_FRACTIONS,
    absolute: bool = True,
    mode: Mode = "counterfactual",
    greedy: bool = False,
) -> FaithfulnessCurve:
    """Faithfulness of the top-`fraction` circuits (pruned to paths from input to logits)."""
    graph = scores.graph
    evaluate = CircuitEvaluator(model, pairs, metric, mode)  # the runs once, for every circuit size
    full = evaluate(torch.ones(graph.n_edges, dtype=torch.bool)).mean().item()
    empty = evaluate(torch.zeros(graph.n_edges, dtype=torch.bool)).mean().item()
    if abs(full - empty) < 1e-12:
        raise InputError(
            "the full model and the empty circuit give the same metric: faithfulness is undefined"
        )
    sizes, faithful = [], []
    for fraction in fractions:
        circuit = select(scores, top_fraction=fraction, absolute=absolute, greedy=greedy)
        value = evaluate(circuit).mean().item()
        sizes.append(int(circuit.sum()))
        faithful.append((value - empty) / (full - empty))
    return FaithfulnessCurve(list(fractions), sizes, faithful, full, empty, absolute, mode)


# --- EAP-IG's JSON layout ---


def circuit_json(scores: EdgeScores, circuit: Bool[Tensor, " edge"]) -> dict:
    """The circuit in EAP-IG's graph JSON layout (nodes with in_graph; edges with score and in_graph)."""
    graph, values, kept = scores.graph, scores.mean_values(), circuit.tolist()
    in_nodes = {"logits"} | {n for n, keep in zip(graph.edge_senders, kept, strict=True) if keep}
    in_nodes |= {n for n, keep in zip(graph.edge_receiver_nodes, kept, strict=True) if keep}
    nodes = {name: {"in_graph": name in in_nodes} for name in [*graph.senders, "logits"]}
    edges = {
        name: {"score": float(v), "in_graph": bool(keep)}
        for name, v, keep in zip(graph.edge_names, values.tolist(), circuit.tolist(), strict=True)
    }
    cfg = graph.config() | {"method": scores.method, "direction": scores.direction, "metric": scores.metric}
    return {"cfg": cfg, "nodes": nodes, "edges": edges}


def save_circuit(path: str | Path, scores: EdgeScores, circuit: Bool[Tensor, " edge"]) -> Path:
    """Write the circuit as EAP-IG's graph JSON, atomically."""
    return write_atomic(path, json.dumps(circuit_json(scores, circuit), allow_nan=False))


def load_circuit(path: str | Path) -> tuple[EdgeScores, Bool[Tensor, " edge"]]:
    """Read EAP-IG graph JSON (ours or EAP-IG's): the edge scores and the circuit mask."""
    data = json.loads(Path(path).read_text())
    try:
        cfg, edges = data["cfg"], data["edges"]
        graph = Graph(int(cfg["n_layers"]), int(cfg["n_heads"]))
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(
            f"{path} is not a circuit in EAP-IG's JSON layout ({type(error).__name__}: {error})"
        ) from None
    if cfg.get("parallel_attn_mlp") is False:
        raise InputError(f"{path} describes sequential blocks (GPT-2 style); Phi's blocks are parallel")
    missing = [name for name in graph.edge_names if name not in edges]
    if missing:
        raise InputError(
            f"{path} lacks {len(missing)} edges of a {graph.n_layers}x{graph.n_heads} graph, e.g. {missing[0]!r}"
        )
    values = torch.tensor([float(edges[name]["score"]) for name in graph.edge_names])
    circuit = torch.tensor([bool(edges[name]["in_graph"]) for name in graph.edge_names])
    scores = EdgeScores(graph, values, str(cfg.get("method", "loaded")), str(cfg.get("direction", "noising")),
                        str(cfg.get("metric", "")), float("nan"), float("nan"))  # fmt: skip
    return scores, circuit
