"""Circuits: choose edges from scores, run the model through only those edges, measure faithfulness.

- `select`: the top k (or a fraction) of edges by importance or |importance| (`EdgeScores.importance`:
  how far an edge moves the metric towards the clean behaviour, so signed ranking means the same in
  both directions), a threshold, or a greedy connected
  selection that grows the circuit backwards from the logits, always taking the best edge into a node
  already in it; `prune` drops edges that are not on a path from `input` to `logits`.
  It returns a `Circuit` (`graph.py`): `len(circuit)` is its number of edges, iterating gives their
  names, `.mask` the bool mask over the graph's edges; every function here takes either.
- `evaluate_circuit`: the clean prompts run with every receiver input built from the senders the
  circuit keeps (their outputs in this same run) and, for every other edge, the sender's ablated value:
  its output on the corrupted prompts (`counterfactual`), its mean over the corrupted prompts and
  positions (`mean`; `mean_over="clean"`: over the clean ones), or zero (`zero`), the values
  `interp.methods.interventions.ablation_values` gives (the code the vocabulary's `Ablate` runs). The full graph gives the clean metric and, with
  `counterfactual`, the empty graph the corrupted one (both tested).
- A graph with feature nodes is evaluated by node ablation instead (`node_ablation`: every feature node
  the circuit leaves out ablated, m(full) the model itself), with its dictionaries spliced in
  (`dictionaries=`); `evaluator_for` picks the evaluator of a graph.
- `faithfulness_curve`: f = (m(C) - m(empty)) / (m(full) - m(empty)) for circuits of the top
  0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50 and 100 % of edges, and MIB's summaries: CPR, the area under the
  curve (signed scores), and CMD, the area between the curve and 1 (|scores|), both by the trapezoid
  rule over the fraction of edges, as in the MIB circuit-localisation track.
- `save_circuit` / `load_circuit`: EAP-IG's JSON layout (`cfg`, `nodes` with `in_graph`, `edges` with
  `score` and `in_graph`), so a circuit moves between this workbench and the EAP-IG/MIB tools. A graph
  with feature nodes (a feature circuit's, `FeatureCircuit.scores`) adds its sites to `cfg` (`features`,
  `components`: `Graph.config`), and loads back through `Graph.from_config` with the same edges; the
  head graph's `cfg` stays EAP-IG's own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import einops
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.base.errors import FileKindError, InputError
from interp.base.files import read_json, write_atomic
from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptPairs
from interp.dictionaries.base import Dictionary
from interp.engine.receivers import run_receivers
from interp.methods.circuits.edge_patching import sender_outputs
from interp.methods.circuits.graph import Circuit, Graph, check_mask, check_size, expected_edge_count
from interp.methods.circuits.node_ablation import NodeAblationEvaluator
from interp.methods.circuits.scores import EdgeScores
from interp.methods.contrastive import contrast
from interp.methods.interventions import ablation_values
from interp.methods.vocabulary import CircuitAblationMethod, MeanOver, check_mean_over, check_method
from interp.model.loading import HookedPhi

Mode = CircuitAblationMethod  # the one spelling's subset circuits give
# a circuit JSON of Phi-2 (a score per edge, a few million edges) stays well below this
MAX_CIRCUIT_BYTES = 1 << 30
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
) -> Circuit:
    """The circuit of the chosen edges; give exactly one of top_k (an integer from 0 to the number of
    edges), top_fraction (a number in [0, 1]) and threshold (a finite number)."""
    given = [
        name
        for name, value in (("top_k", top_k), ("top_fraction", top_fraction), ("threshold", threshold))
        if value is not None
    ]
    if len(given) != 1:
        raise InputError(f"give exactly one of top_k, top_fraction and threshold (got {given or 'none'})")
    graph = scores.graph
    ranking = scores.importance().abs() if absolute else scores.importance()
    _check_finite(graph, ranking, "scores")
    if threshold is not None:
        if not _is_number(threshold) or not math.isfinite(threshold):
            raise InputError(f"threshold={threshold!r} is not allowed; use a finite number.")
        chosen = ranking >= threshold
        return Circuit(graph, prune_dangling(graph, chosen) if prune else chosen)
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= graph.n_edges:
            raise InputError(
                f"top_k={top_k!r} is not allowed; use an integer from 0 to {graph.n_edges} (this graph's edges)."
            )
        k = top_k
    else:
        if not _is_number(top_fraction) or not 0 <= top_fraction <= 1:
            raise InputError(f"top_fraction={top_fraction!r} is not allowed; use a number from 0 to 1.")
        k = int(top_fraction * graph.n_edges)
    if greedy:
        chosen = _greedy(graph, ranking, k)
    else:
        chosen = torch.zeros(graph.n_edges, dtype=torch.bool)
        chosen[ranking.argsort(descending=True, stable=True)[:k]] = True
    return Circuit(graph, prune_dangling(graph, chosen) if prune else chosen)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_finite(graph: Graph, values: Float[Tensor, " edge"], what: str) -> None:
    """InputError naming the first edge whose value is NaN or infinite."""
    bad = ~torch.isfinite(values)
    if bad.any():
        first = int(bad.nonzero()[0, 0])
        raise InputError(
            f"{what} of {int(bad.sum())} edges are not finite, e.g. {graph.edge_names[first]!r}: "
            f"{values[first].item()}; edges are ranked by finite scores only."
        )


def _greedy(graph: Graph, ranking: Float[Tensor, " edge"], k: int) -> Bool[Tensor, " edge"]:
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


def prune_dangling(graph: Graph, chosen: Circuit | Bool[Tensor, " edge"]) -> Circuit | Bool[Tensor, " edge"]:
    """Keep only edges on a path from `input` to `logits` (through chosen edges); a circuit or a mask,
    as given."""
    if isinstance(chosen, Circuit):
        return Circuit(graph, prune_dangling(graph, Circuit.of(graph, chosen).mask))
    check_mask(graph, chosen)
    senders, receivers = graph.edge_senders, graph.edge_receiver_nodes
    chosen = chosen.clone()
    while True:
        # edges are in the order of their senders, the forward's (so a topological order, also between
        # the feature nodes of one layer): forwards, every edge into a sender comes before its own edges
        live = chosen.nonzero().flatten().tolist()
        reached, feeds = {"input"}, {"logits"}
        for p in live:
            if senders[p] in reached:
                reached.add(receivers[p])
        for p in reversed(live):
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
    circuit: Circuit | Bool[Tensor, " edge"],
    metric: MetricKind | Metric = "logit_diff",
    *,
    mode: Mode = "counterfactual",
    dictionaries: Dictionary | Sequence[Dictionary] = (),
    mean_over: MeanOver | None = None,
) -> Float[Tensor, " batch"]:
    """Per-prompt metric of the clean prompts run through only the circuit's edges (see the module
    docstring); a circuit of a graph with feature nodes through its nodes, with the graph's
    `dictionaries` spliced in (`node_ablation`). With `mode="mean"`, `mean_over` names the prompts
    averaged: "corrupted" (the default) or "clean"."""
    graph = circuit.graph if isinstance(circuit, Circuit) else None
    return evaluator_for(model, pairs, metric, mode, graph, dictionaries, mean_over)(circuit)


def evaluator_for(
    model: HookedPhi,
    pairs: PromptPairs,
    metric: MetricKind | Metric,
    mode: Mode,
    graph: Graph | None = None,
    dictionaries: Dictionary | Sequence[Dictionary] = (),
    mean_over: MeanOver | None = None,
) -> CircuitEvaluator | NodeAblationEvaluator:
    """What evaluates circuits of `graph` (the model's head graph by default): `CircuitEvaluator`, by
    edges, for the head graph; `NodeAblationEvaluator`, by nodes, for a graph of feature nodes."""
    if graph is not None and (graph.features or not graph.components):
        return NodeAblationEvaluator(model, pairs, graph, metric, mode, dictionaries, mean_over)
    return CircuitEvaluator(model, pairs, metric, mode, mean_over)


class CircuitEvaluator:
    """The clean and corrupted runs and the ablated sender values, computed once for many circuits.
    The ablated values are `interp.methods.interventions.ablation_values` of the senders' outputs:
    on the corrupted prompts (`counterfactual`), their mean over the `mean_over` prompts and positions
    (`mean`; default the corrupted ones), or zero."""

    def __init__(
        self,
        model: HookedPhi,
        pairs: PromptPairs,
        metric: MetricKind | Metric,
        mode: Mode,
        mean_over: MeanOver | None = None,
    ):
        check_method(mode, get_args(CircuitAblationMethod), "mode")
        side = check_mean_over(mean_over, mode, "corrupted")
        self.core = contrast(model, pairs, metric, direction="noising")
        w = self.core.weights
        self.graph = Graph.of(w.n_layers, w.n_heads)
        runs = [g.clean if mode == "mean" and side == "clean" else g.corrupted for g in self.core.groups]
        # sender batch pos d_model per length group
        self.ablated = ablation_values(mode, [sender_outputs(w, run) for run in runs], axes=(1, 2))

    def full(self) -> Float[Tensor, " batch"]:
        """Every edge kept: the clean run itself (tested)."""
        return self(torch.ones(self.graph.n_edges, dtype=torch.bool))

    def empty(self) -> Float[Tensor, " batch"]:
        """Every edge ablated."""
        return self(torch.zeros(self.graph.n_edges, dtype=torch.bool))

    def __call__(self, circuit: Circuit | Bool[Tensor, " edge"]) -> Float[Tensor, " batch"]:
        graph, core = self.graph, self.core
        mask = graph.to_matrix(Circuit.of(graph, circuit).mask.float()).to(
            core.clean_logits.device
        )  # sender receiver
        values = torch.zeros(len(core.pairs))
        for group, ablated in zip(core.groups, self.ablated, strict=True):
            logits = _run_circuit(graph, core.weights, group.clean.resid_pre[0], mask, ablated)
            values[group.index] = core.measure(logits, group.index).float().cpu()
        return values


@torch.no_grad()
def _run_circuit(
    graph: Graph,
    w,
    embed: Float[Tensor, "batch pos d_model"],
    mask: Float[Tensor, "sender receiver"],
    ablated: Float[Tensor, "sender batch pos d_model"],
) -> Float[Tensor, "batch d_vocab"]:
    def inputs(
        layer: int,
        resid: Float[Tensor, "batch pos d_model"],
        outputs: list[Float[Tensor, "batch pos d_model"]],
    ) -> Float[Tensor, "batch receiver pos d_model"]:
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
    dictionaries: Dictionary | Sequence[Dictionary] = (),
    mean_over: MeanOver | None = None,
) -> FaithfulnessCurve:
    """Faithfulness of the top-`fraction` circuits (pruned to paths from input to logits); over a graph
    with feature nodes, by node ablation with its `dictionaries` spliced in (`node_ablation`).
    `mean_over` as for `evaluate_circuit`."""
    # the runs once, for every circuit size
    evaluate = evaluator_for(model, pairs, metric, mode, scores.graph, dictionaries, mean_over)
    full, empty = evaluate.full().mean().item(), evaluate.empty().mean().item()
    if abs(full - empty) < 1e-12:
        raise InputError(
            "the full model and the empty circuit give the same metric: faithfulness is undefined"
        )
    sizes, faithful = [], []
    for fraction in fractions:
        circuit = select(scores, top_fraction=fraction, absolute=absolute, greedy=greedy)
        value = evaluate(circuit).mean().item()
        sizes.append(len(circuit))
        faithful.append((value - empty) / (full - empty))
    return FaithfulnessCurve(list(fractions), sizes, faithful, full, empty, absolute, mode)


# --- EAP-IG's JSON layout ---


def circuit_json(
    scores: EdgeScores, circuit: Circuit | Bool[Tensor, " edge"], *, d_model: int | None = None
) -> dict:
    """The circuit in EAP-IG's graph JSON layout, every field its `Graph.from_json` reads: `cfg` (n_layers,
    n_heads, parallel_attn_mlp, d_model; ours add method, direction, metric and the baselines), `nodes`
    (every node, logits included, with in_graph) and `edges` (every edge, with score and in_graph)."""
    graph = scores.graph
    circuit = Circuit.of(graph, circuit).mask
    values = scores.mean_values()
    if values.shape != (graph.n_edges,):
        raise InputError(f"scores hold {tuple(values.shape)} values for a graph of {graph.n_edges} edges")
    _check_finite(graph, values, "scores")
    d_model = d_model if d_model is not None else scores.extra.get("d_model")
    if d_model is None:
        raise InputError(
            "these scores do not record the model's d_model, which EAP-IG's reader needs: pass d_model="
        )
    check_size("d_model", d_model)
    kept = circuit.tolist()
    in_nodes = {"logits"} | {n for n, keep in zip(graph.edge_senders, kept, strict=True) if keep}
    in_nodes |= {n for n, keep in zip(graph.edge_receiver_nodes, kept, strict=True) if keep}
    nodes = {name: {"in_graph": name in in_nodes} for name in [*graph.senders, "logits"]}
    edges = {
        name: {"score": float(v), "in_graph": keep}
        for name, v, keep in zip(graph.edge_names, values.tolist(), kept, strict=True)
    }
    cfg = graph.config() | {"d_model": d_model, "method": scores.method, "direction": scores.direction}
    cfg |= {"metric": scores.metric}
    cfg |= {name: value for name in ("clean", "corrupted") if math.isfinite(value := getattr(scores, name))}
    return {"cfg": cfg, "nodes": nodes, "edges": edges}


def save_circuit(
    path: str | Path,
    scores: EdgeScores,
    circuit: Circuit | Bool[Tensor, " edge"],
    *,
    d_model: int | None = None,
) -> Path:
    """Write the circuit as EAP-IG's graph JSON, atomically. `d_model` (which EAP-IG's reader needs) is
    the scores' own (every edge method records it), or give it for scores built by hand."""
    Circuit.of(scores.graph, circuit)
    return write_atomic(path, json.dumps(circuit_json(scores, circuit, d_model=d_model), allow_nan=False))


def load_circuit(path: str | Path) -> tuple[EdgeScores, Circuit]:
    """Read EAP-IG graph JSON (ours or EAP-IG's `Graph.to_json`): the edge scores and the circuit, over
    the graph `cfg` describes (with feature nodes where it names `features`: `Graph.from_config`).

    Every field is checked and a bad one named with its value and what is allowed; the graph's size is
    checked against the number of edges the file holds before anything of that size is built."""
    data = _read_json(path)
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("cfg"), dict)
        or not isinstance(data.get("edges"), dict)
    ):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise InputError(
            f"{path} is not a circuit in EAP-IG's JSON layout: it needs objects 'cfg' and 'edges' (found {found})"
        )
    cfg, edges = data["cfg"], data["edges"]

    def size(name: str) -> int:
        if name not in cfg:
            raise InputError(f"{path}: cfg has no {name!r} (an integer of 1 or more)")
        try:
            return check_size(f"cfg.{name}", cfg[name])
        except InputError as error:
            raise InputError(f"{path}: {error}") from None

    n_layers, n_heads = size("n_layers"), size("n_heads")
    parallel = cfg.get("parallel_attn_mlp", True)
    if not isinstance(parallel, bool):
        raise InputError(f"{path}: cfg.parallel_attn_mlp={parallel!r} is not allowed; use true or false")
    if not parallel:
        raise InputError(f"{path} describes sequential blocks (GPT-2 style); Phi's blocks are parallel")
    d_model = size("d_model") if "d_model" in cfg else None
    direction = cfg.get("direction", "noising")
    if direction not in ("noising", "denoising"):
        raise InputError(f"{path}: cfg.direction={direction!r} is not allowed; use 'noising' or 'denoising'")
    if "features" in cfg or "components" in cfg:
        graph = _feature_graph(path, cfg, len(edges))
        shape = f"{n_layers}x{n_heads} graph with these feature nodes"
    else:
        n_edges = expected_edge_count(n_layers, n_heads)
        if n_edges > len(edges):
            raise InputError(
                f"{path}: cfg says a graph of {n_layers} layers x {n_heads} heads ({n_edges} edges), but the "
                f"file holds {len(edges)} edges"
            )
        graph, shape = Graph.of(n_layers, n_heads), f"{n_layers}x{n_heads} graph"
    n_edges = graph.n_edges
    missing = [name for name in graph.edge_names if name not in edges]
    if missing:
        raise InputError(f"{path} lacks {len(missing)} edges of a {shape}, e.g. {missing[0]!r}")
    if len(edges) > n_edges:
        known = set(graph.edge_names)
        extra = next(name for name in edges if name not in known)
        raise InputError(
            f"{path}: {extra!r} (and {len(edges) - n_edges - 1} more) is not an edge of Phi's parallel {shape}"
        )
    values = torch.tensor([_edge_field(path, name, edges[name], "score") for name in graph.edge_names])
    circuit = torch.tensor([_edge_field(path, name, edges[name], "in_graph") for name in graph.edge_names])
    baselines = [cfg.get(name) for name in ("clean", "corrupted")]
    clean, corrupted = (float(v) if _is_number(v) and math.isfinite(v) else float("nan") for v in baselines)
    scores = EdgeScores(graph, values, str(cfg.get("method", "loaded")), direction, str(cfg.get("metric", "")),
                        clean, corrupted, extra={"d_model": d_model} if d_model else {})  # fmt: skip
    return scores, Circuit(graph, circuit)


# a graph's dense [sender, receiver] tables may hold this many cells per edge the file holds (EAP-IG's
# head graph holds ~2, a feature graph of many sites a few dozen), or 2^24 cells whatever it holds
CELLS_PER_EDGE = 1024


def _feature_graph(path: str | Path, cfg: dict, n_held: int) -> Graph:
    """The graph with feature nodes that `cfg` describes (`Graph.from_config`), refused by name if it is
    bad, and by its size if its tables would be far larger than the edges the file holds (checked before
    any table is built)."""
    try:
        graph = Graph.from_config(cfg)
    except InputError as error:
        raise InputError(f"{path}: {error}") from None
    L, H = graph.n_layers, graph.n_heads
    features = sum(len(site.latents) + site.error for site in graph.features)
    senders = 1 + features + (L * (H + 1) if graph.components else 0)
    receivers = 1 + features + (L * (3 * H + 1) if graph.components else 0)
    if senders * receivers > max(CELLS_PER_EDGE * n_held, 1 << 24):
        raise InputError(
            f"{path}: cfg describes a graph of {senders} nodes and {receivers} inputs ({features} feature "
            f"nodes), but the file holds {n_held} edges"
        )
    return graph


def _edge_field(path: str | Path, name: str, entry: object, key: str) -> float | bool:
    """An edge's finite `score` or boolean `in_graph`, else InputError naming the edge and the value."""
    allowed = {"score": "a finite number", "in_graph": "true or false"}[key]
    if not isinstance(entry, dict) or key not in entry:
        raise InputError(
            f"{path}: edges[{name!r}] = {entry!r} has no {key!r}; every edge needs 'score' (a finite "
            "number) and 'in_graph' (true or false)"
        )
    value = entry[key]
    if key == "in_graph":
        if isinstance(value, bool):
            return value
    elif _is_number(value):
        try:
            if math.isfinite(float(value)):
                return float(value)
        except OverflowError:
            pass
    raise InputError(f"{path}: edges[{name!r}].{key} = {value!r} is not allowed; use {allowed}")


def _read_json(path: str | Path) -> object:
    """The JSON value of a regular file (not a directory, FIFO or device) of at most 1 GiB, else InputError."""
    path = Path(path)
    try:
        return read_json(path, MAX_CIRCUIT_BYTES, "circuit file")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except FileKindError as error:
        raise InputError(f"{error} Give a circuit JSON file in EAP-IG's layout.") from None
    except OSError as error:
        raise InputError(f"{path} cannot be read ({error.strerror or error})") from None
