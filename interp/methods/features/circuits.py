"""Feature circuits on prompt pairs (Marks et al. 2024, "Sparse Feature Circuits"): nodes are dictionary
latents and error terms, edges their direct effects on each other, scored by EAP or EAP-IG.

The graph. With the dictionaries spliced in with their error terms (`interp.dictionaries.splice`), each
dictionary site (the hook it writes, in forward order) holds `d_sae` latent nodes and one error node;
a node is a latent (or the error) *summed over positions*, as Marks et al.'s default. Upstream of every
site are the token embedding (`input`) and every earlier site; downstream of every site is the
`metric`. Node labels are `feature_attribution`'s: `blocks.1.hook_resid_post[12]`,
`blocks.1.hook_resid_post[error]`, plus `input` and `metric`.

Edges are direct effects: the effect of a node on a later node that does not pass through any other
node. To compute them the forward is run with every site's latents and error replaced by leaves
holding their own values (so a site's output is a constant of everything upstream) while each site's
latents and error are still *computed* from what reaches it: the Jacobian of a computed node with
respect to an upstream leaf is then the direct one. Scores follow Marks et al.:

    node  u:        (u_source - u_base) . g_u                      (g_u = d metric / d u, total)
    edge  u -> d:   (u_source - u_base) . J_du^T g_d               (J_du = d d / d u, direct)
    edge  u -> metric:  (u_source - u_base) . d metric / d u  (direct, every site frozen)

summed over positions (and the width, for the input and error nodes), averaged over prompts; the base
run is the corrupted one when denoising and the clean one when noising (`interp.methods.contrastive`).
EAP takes the gradients and Jacobians at the base run; EAP-IG averages them over `steps` points on the
straight line from the base run's embeddings to the source run's (`integration_points`, midpoints by
default), each point its own run. Where the model is linear between nodes the edges into a node sum to
its node score, and the node scores equal `feature_attribution`'s summed over positions (tested).
Edges are computed into the nodes kept by the node selection (`top_k` by |score|, or `node_threshold`),
from every kept node, the input and the error nodes, as Marks et al. do: one backward per kept node.

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
from interp.engine import hook_points
from interp.engine.edits import Keep, Replace
from interp.engine.forward import PhiWeights, forward
from interp.methods.circuits.direct_effects import check_dictionaries_for_circuits
from interp.methods.circuits.edge_attribution import Rule, gradient_points
from interp.methods.contrastive import Direction, base_and_source, contrast
from interp.methods.features.patching import spliced_for
from interp.model.loading import HookedPhi

Method = Literal["eap", "eap_ig"]
FORMAT = "interp.feature_circuit/1"


@dataclass(frozen=True)
class Site:
    """One spliced dictionary in the graph: its entry and where its nodes start in the node axis."""

    entry: SplicedDictionary
    offset: int  # node index of latent 0 (its error node is offset + d_sae)

    @property
    def d_sae(self) -> int:
        return self.entry.dictionary.d_sae

    @property
    def acts(self) -> str:
        return self.entry.name("hook_acts")

    @property
    def error(self) -> str:
        return self.entry.name("hook_error")

    @property
    def stop(self) -> int:
        return self.offset + self.d_sae + 1


def ordered_sites(entries: Sequence[SplicedDictionary]) -> list[Site]:
    """The sites in forward order (layer, then the written point's place in the block); node 0 is the
    input, then each site's latents and its error node."""
    order = list(hook_points.BLOCK_POINTS)
    entries = sorted(entries, key=lambda e: (e.layer, order.index(e.write_point)))
    sites, offset = [], 1
    for entry in entries:
        sites.append(Site(entry, offset))
        offset += entry.dictionary.d_sae + 1
    return sites


def node_labels(sites: Sequence[Site]) -> list[str]:
    """`input`, then per site `<hook written>[<latent>]` and `<hook written>[error]`."""
    labels = ["input"]
    for site in sites:
        writes = site.entry.writes
        labels += [f"{writes}[{i}]" for i in range(site.d_sae)] + [f"{writes}[error]"]
    return labels


@dataclass
class FeatureCircuit:
    """Node scores over every node, the kept nodes, and the edges between them (module docstring).

    `labels[i]` names node i (0 is `input`); `node_scores[i]` its estimated effect (patched metric -
    base metric) when patched alone at every position; `kept` the node indices selected, in node order;
    `edges[s, t]` the edge from `sources[s]` to `targets[t]` (node indices; the last target, index -1 in
    `targets`, is the metric). Sources are the input, the kept nodes and every error node."""

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


@dataclass
class _Runs:
    """What every scoring pass needs: the weights, the sites, the metric and both runs' node values."""

    w: PhiWeights
    sites: list[Site]
    measure: Metric
    index: Tensor
    base_embed: Tensor
    source_embed: Tensor
    base: dict[str, Tensor]
    source: dict[str, Tensor]

    @property
    def points(self) -> list[str]:
        return [p for s in self.sites for p in (s.acts, s.error)]

    def embed_at(self, alpha: float) -> Tensor:
        return self.base_embed + alpha * (self.source_embed - self.base_embed)

    def metric_sum(self, run) -> Tensor:
        return self.measure(run.logits(self.w), self.index).sum()  # prompts are independent

    def total_gradients(self, alpha: float) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """At the run `alpha` of the way from base to source: every point's value and the metric's
        total gradient there (`input` for the embedding)."""
        embed = self.embed_at(alpha).detach().requires_grad_(True)
        kept: dict[str, Tensor] = {}
        with torch.enable_grad():
            run = forward(self.w, embed, {p: Keep(kept, grad=True) for p in self.points})
            names = self.points
            grads = torch.autograd.grad(self.metric_sum(run), [embed] + [kept[p] for p in names])
        values = {p: kept[p].detach() for p in names} | {"input": embed.detach()}
        return dict(zip(["input"] + names, [g.detach() for g in grads], strict=True)), values

    def delta(self, name: str) -> Tensor:
        if name == "input":
            return self.source_embed - self.base_embed
        return self.source[name] - self.base[name]

    def contributions(self, name: str, grad: Tensor | None) -> Tensor:
        """Per prompt, (source - base) . grad summed over positions: [batch] for the input and error
        points, [batch d_sae] for latents; zeros where no path reaches (grad None)."""
        delta = self.delta(name)
        if grad is None:
            grad = torch.zeros_like(delta)
        product = delta * grad.to(delta.dtype)
        return product.sum(-2) if name.endswith("hook_acts") else product.sum((-1, -2))[:, None]

    def node_row(self, grads: dict[str, Tensor | None]) -> Tensor:
        """[batch node]: every node's contribution from per-point gradients (absent points give zeros)."""
        parts = [self.contributions("input", grads.get("input"))]
        for site in self.sites:
            parts += [self.contributions(site.acts, grads.get(site.acts))]
            parts += [self.contributions(site.error, grads.get(site.error))]
        return torch.cat(parts, dim=1)


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
    direction, alphas = gradient_points(method, steps, rule, direction)
    dictionaries = check_dictionaries_for_circuits(dictionaries)
    if not pairs.same_length:
        raise InputError("feature_circuit sums nodes over positions: give prompts of one token length.")
    with ExitStack() as stack:
        spliced = spliced_for(stack, model, dictionaries, True)
        runs, core = _prepare(model, spliced, dictionaries, pairs, metric, direction)
        labels = node_labels(runs.sites)
        node_sum, at_points = 0.0, []
        for alpha in alphas:
            grads, values = runs.total_gradients(alpha)
            node_sum = node_sum + runs.node_row(grads)
            at_points.append((grads, values))
        node_scores = (node_sum / len(alphas)).mean(0).float().cpu()
        kept = select_nodes(node_scores, top_k=top_k, node_threshold=node_threshold)
        errors = [s.stop - 1 for s in runs.sites]
        sources = sorted({0, *kept, *errors})
        targets = [*kept, FeatureCircuit.METRIC]
        edges = sum(_edges_at(runs, *at, kept) for at in at_points) / len(alphas)
        return FeatureCircuit(
            labels,
            node_scores,
            kept,
            sources,
            targets,
            edges.mean(0)[sources].float().cpu(),
            method,
            direction,
            core.metric.kind,
            core.clean_value,
            core.corrupted_value,
            extra={
                "estimate_of": "patched metric - base metric",
                "sites": [s.entry.writes for s in runs.sites],
            }
            | ({"steps": len(alphas), "rule": rule} if method == "eap_ig" else {}),
        )


def _prepare(model, spliced, dictionaries, pairs, metric, direction):
    """The contrastive core (metric, baselines) and both runs' node values."""
    sites = ordered_sites([spliced.entry(d) for d in dictionaries])
    core = contrast(model, pairs, metric, direction=direction, keep="logits")
    w = PhiWeights.from_model(model)
    device = w.W_E.device
    base_tokens, source_tokens = base_and_source(pairs.clean_tokens, pairs.corrupted_tokens, direction)
    points = [p for s in sites for p in (s.acts, s.error)]
    values = []
    with torch.no_grad():
        for tokens in (base_tokens, source_tokens):
            kept: dict[str, Tensor] = {}
            forward(w, w.W_E[tokens.to(device)], {p: Keep(kept) for p in points})
            values.append(kept)
    runs = _Runs(
        w,
        sites,
        core.metric,
        core.everyone,
        w.W_E[base_tokens.to(device)].detach(),
        w.W_E[source_tokens.to(device)].detach(),
        values[0],
        values[1],
    )
    return runs, core


def leaf_run(runs: _Runs, embed: Tensor, values: dict[str, Tensor]):
    """The forward with every point replaced by a leaf holding `values[point]`, each point's value as
    computed from upstream kept (with its graph) in `computed`: (run, leaves, computed, embed leaf)."""
    leaves = {p: values[p].detach().clone().requires_grad_(True) for p in runs.points}
    computed: dict[str, Tensor] = {}
    embed = embed.detach().clone().requires_grad_(True)
    edits = {p: [Keep(computed, grad=True), Replace(leaves[p])] for p in runs.points}
    return forward(runs.w, embed, edits), leaves, computed, embed


def _edges_at(runs: _Runs, grads: dict, values: dict, kept: list[int]) -> Tensor:
    """[batch node target]: every node's edge into each kept node and the metric at one point (its
    run's values and total gradients, `total_gradients`)."""
    columns = []
    with torch.enable_grad():
        run, leaves, computed, embed = leaf_run(runs, values["input"], values)
        metric = runs.metric_sum(run)
        for t in kept:
            site = next(s for s in runs.sites if s.offset <= t < s.stop)
            upstream = {"input": embed} | {
                p: leaves[p] for s in runs.sites[: runs.sites.index(site)] for p in (s.acts, s.error)
            }
            if t == site.stop - 1:
                target = (grads[site.error] * computed[site.error]).sum()
            else:
                i = t - site.offset
                target = (grads[site.acts][..., i] * computed[site.acts][..., i]).sum()
            columns.append(_row(runs, target, upstream))
        columns.append(_row(runs, metric, {"input": embed} | leaves))
    return torch.stack(columns, dim=-1)


def _row(runs: _Runs, output: Tensor, inputs: dict[str, Tensor]) -> Tensor:
    """[batch node]: (source - base) . d output / d node for every node in `inputs` (zeros elsewhere)."""
    names = list(inputs)
    grads = torch.autograd.grad(output, [inputs[n] for n in names], retain_graph=True, allow_unused=True)
    return runs.node_row(dict(zip(names, grads, strict=True)))
