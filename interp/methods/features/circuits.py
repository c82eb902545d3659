"""Feature circuits on prompt pairs (Marks et al. 2024, "Sparse Feature Circuits"): nodes are dictionary
latents and error terms, edges their direct effects on each other, scored by EAP or EAP-IG.

The graph. With the dictionaries spliced in with their error terms (`interp.dictionaries.splice`), each
dictionary site (the hook it writes, in forward order) holds `d_sae` latent nodes and one error node;
a node is a latent (or the error) *summed over positions*, as Marks et al.'s default. Upstream of every
site are the token embedding (`input`) and every earlier site; downstream of every site is the
`metric`. Node labels are `feature_attribution`'s: `blocks.1.hook_resid_post[12]`,
`blocks.1.hook_resid_post[error]`, plus `input` and `metric`.

Edges are direct effects: the effect of a node on a later node that does not pass through any other
node. The graph is `interp.methods.circuits.graph.Graph` with the sites as `FeatureSite`s and no heads
or MLPs as nodes (`components=False`), so feature nodes are one node type of the one edge graph, and
both scores are the shared direct-effect scorer's (`interp.methods.circuits.direct_effects`):

    node  u:        (u_source - u_base) . g_u                      (g_u = d metric / d u, total)
    edge  u -> d:   (u_source - u_base) . J_du^T g_d               (J_du = d d / d u, direct)
    edge  u -> metric:  (u_source - u_base) . d metric / d u  (direct, every site frozen)

summed over positions (and the width, for the input and error nodes), averaged over prompts; the base
run is the corrupted one when denoising and the clean one when noising (`interp.methods.contrastive`).
EAP takes the gradients and Jacobians at the base run; EAP-IG averages them over `steps` points on the
straight line from the base run's embeddings to the source run's (`integration_points`, midpoints by
default), each point its own run. Where the model is linear between nodes the edges into a node sum to
its node score, and the node scores equal `feature_attribution`'s summed over positions (tested).

Node scores are computed for every latent (`score_nodes`, which needs no edge table); the graph whose
edges are scored holds the nodes kept by the node selection (`top_k` by |score|, or `node_threshold`)
and every error node, as Marks et al. do: its edges come from the input, the kept nodes and the error
nodes (a latent that is not kept passes nothing on: its value is fixed), one backward per receiver.
`FeatureCircuit.scores` holds them as `EdgeScores` over that graph, so `interp.methods.circuits.circuit`
selects, saves and loads feature circuits as it does head circuits.

Skip transcoders' linear skip path would be a path with no node; they are refused by name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp.base.errors import InputError
from interp.base.files import write_atomic
from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptPairs
from interp.dictionaries.base import Dictionary
from interp.dictionaries.splice import SplicedDictionary
from interp.methods.circuits.direct_effects import check_dictionaries_for_circuits, score_graph, score_nodes
from interp.methods.circuits.edge_attribution import Rule, gradient_points
from interp.methods.circuits.graph import FeatureSite, Graph, site_order
from interp.methods.circuits.scores import EdgeScores
from interp.methods.contrastive import Direction
from interp.methods.features.patching import spliced_for
from interp.model.loading import HookedPhi

Method = Literal["eap", "eap_ig"]
FORMAT = "interp.feature_circuit/1"


def feature_sites(entries: Sequence[SplicedDictionary]) -> list[FeatureSite]:
    """Every latent (and the error term) of each spliced dictionary as a `FeatureSite`, in forward order."""
    sites = [FeatureSite(e.writes, e.reads, tuple(range(e.dictionary.d_sae))) for e in entries]
    return sorted(sites, key=site_order)


def node_labels(sites: Sequence[FeatureSite]) -> list[str]:
    """`input`, then per site (in the order given) `<hook written>[<latent>]` and `<hook written>[error]`."""
    return ["input"] + [name for site in sites for name in site.node_names]


@dataclass
class FeatureCircuit:
    """Node scores over every node, the kept nodes, and the edges between them (module docstring).

    `labels[i]` names node i (0 is `input`); `node_scores[i]` its estimated effect (patched metric -
    base metric) when patched alone at every position; `kept` the node indices selected, in node order;
    `edges[s, t]` the edge from `sources[s]` to `targets[t]` (node indices; the last target, index -1 in
    `targets`, is the metric). Sources are the input, the kept nodes and every error node. `scores`
    holds every edge of the scored graph (`EdgeScores`: receivers include the error nodes not kept)."""

    labels: list[str]
    node_scores: Float[Tensor, " node"]
    kept: list[int]
    sources: list[int]
    targets: list[int]
    edges: Float[Tensor, "source target"]
    method: str
    direction: str
    metric: str
    clean: float
    corrupted: float
    extra: dict = field(default_factory=dict)
    scores: EdgeScores | None = field(default=None, repr=False, compare=False)  # every edge of the graph

    METRIC = -1  # the metric's index in `targets`

    def edge(self, source: str, target: str) -> float:
        """The score of one edge by node labels (`target` may be "metric")."""
        index = {label: i for i, label in enumerate(self.labels)}
        for name in (source, target):
            if name != "metric" and name not in index:
                raise InputError(f"{name!r} is not a node of this graph (e.g. {self.labels[1]!r})")
        if index[source] not in self.sources:
            raise InputError(f"{source!r} is not a source here: sources are the input, kept and error nodes.")
        t = self.METRIC if target == "metric" else index[target]
        if t != self.METRIC and t not in self.targets:
            raise InputError(f"{target!r} is not a kept node; edges go into kept nodes and the metric.")
        column = len(self.targets) - 1 if t == self.METRIC else self.targets.index(t)
        return float(self.edges[self.sources.index(index[source]), column])

    def top_edges(self, n: int = 20) -> list[tuple[str, str, float]]:
        """The `n` edges of largest |score|: (source label, target label, score)."""
        flat = self.edges.flatten()
        order = flat.abs().argsort(descending=True)[:n].tolist()
        width = len(self.targets)
        out = []
        for i in order:
            s, t = divmod(i, width)
            target = "metric" if self.targets[t] == self.METRIC else self.labels[self.targets[t]]
            out.append((self.labels[self.sources[s]], target, float(flat[i])))
        return out

    def to_json(self) -> dict:
        """The circuit as JSON: `metadata`, `nodes` (id, score, kept) and `links` (source, target, weight).

        Our own layout rather than EAP-IG's: EAP-IG's is a dense [n_forward, n_backward] matrix over a
        fixed head graph, while a feature graph's nodes are chosen per run (the kept latents)."""
        nodes = [
            {"node_id": label, "score": float(self.node_scores[i]), "kept": i in set(self.kept)}
            for i, label in enumerate(self.labels)
        ]
        nodes.append({"node_id": "metric", "score": None, "kept": True})
        links = []
        for s, source in enumerate(self.sources):
            for t, target in enumerate(self.targets):
                weight = float(self.edges[s, t])
                if weight != 0.0:
                    name = "metric" if target == self.METRIC else self.labels[target]
                    links.append({"source": self.labels[source], "target": name, "weight": weight})
        metadata = {
            "format": FORMAT,
            "method": self.method,
            "direction": self.direction,
            "metric": self.metric,
            "clean": self.clean,
            "corrupted": self.corrupted,
        } | self.extra
        return {"metadata": metadata, "nodes": nodes, "links": links}

    def save(self, path: str | Path) -> Path:
        """Write `to_json()` atomically (no symlink followed)."""
        return write_atomic(path, json.dumps(self.to_json(), indent=1))


def select_nodes(
    scores: Float[Tensor, " node"], *, top_k: int | None = None, node_threshold: float | None = None
) -> list[int]:
    """The feature nodes (never the input, index 0) with the `top_k` largest |score| and / or |score| >=
    `node_threshold`, in node order; every feature node when neither is given."""
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise InputError(f"top_k={top_k!r} is not allowed; use an integer 0 or more, or None (every node).")
    if node_threshold is not None and (
        isinstance(node_threshold, bool) or not isinstance(node_threshold, int | float) or node_threshold < 0
    ):
        raise InputError(
            f"node_threshold={node_threshold!r} is not allowed; use a number 0 or more, or None."
        )
    magnitude = scores[1:].abs()
    keep = torch.ones_like(magnitude, dtype=torch.bool)
    if node_threshold is not None:
        keep &= magnitude >= node_threshold
    if top_k is not None:
        top = torch.zeros_like(keep)
        top[magnitude.argsort(descending=True, stable=True)[:top_k]] = True
        keep &= top
    return (keep.nonzero().flatten() + 1).tolist()


def feature_circuit(
    model: HookedPhi,
    dictionaries: Dictionary | Sequence[Dictionary],
    pairs: PromptPairs,
    metric: MetricKind | Metric = "logit_diff",
    *,
    method: Method = "eap",
    direction: Direction = "denoising",
    steps: int = 5,
    rule: Rule = "midpoint",
    top_k: int | None = None,
    node_threshold: float | None = None,
) -> FeatureCircuit:
    """Node and edge scores of the feature graph of `dictionaries` on `pairs` (module docstring)."""
    direction, _ = gradient_points(method, steps, rule, direction)
    dictionaries = check_dictionaries_for_circuits(dictionaries)
    if not pairs.same_length:
        raise InputError("feature_circuit sums nodes over positions: give prompts of one token length.")
    options = {"dictionaries": dictionaries, "method": method, "direction": direction, "steps": steps}
    options["rule"] = rule
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    with ExitStack() as stack:
        spliced = spliced_for(stack, model, dictionaries, True)
        sites = feature_sites([spliced.entry(d) for d in dictionaries])
        every = Graph(n_layers, n_heads, tuple(sites), components=False)  # its nodes only: no edge table
        labels = every.senders
        node_scores = score_nodes(model, pairs, every, metric, **options)
        kept = select_nodes(node_scores, top_k=top_k, node_threshold=node_threshold)
        chosen = set(kept)
        graph = Graph(
            n_layers, n_heads, tuple(_kept_site(s, labels, chosen) for s in sites), components=False
        )
        scores = score_graph(model, pairs, graph, metric, **options)
    index = {label: i for i, label in enumerate(labels)}
    sources = [index[name] for name in graph.senders]  # the input, the kept nodes, every error node
    targets = [*kept, FeatureCircuit.METRIC]
    columns = [graph.receiver_index("logits" if t == FeatureCircuit.METRIC else labels[t]) for t in targets]
    return FeatureCircuit(
        labels,
        node_scores,
        kept,
        sources,
        targets,
        scores.matrix()[:, columns],
        method,
        direction,
        scores.metric,
        scores.clean,
        scores.corrupted,
        extra={"estimate_of": "patched metric - base metric", "sites": [s.writes for s in sites]}
        | ({"steps": scores.extra["steps"], "rule": rule} if method == "eap_ig" else {}),
        scores=scores,
    )


def _kept_site(site: FeatureSite, labels: list[str], kept: set[int]) -> FeatureSite:
    """`site` with only its kept latents (its error node is always in the graph)."""
    first = labels.index(site.node_names[0])
    latents = tuple(i for i in site.latents if first + i in kept)
    return FeatureSite(site.writes, site.reads, latents)
