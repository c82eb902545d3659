"""Checking a feature circuit: exact edge patching, and faithfulness and completeness curves.

`patch_feature_edge` is the exact counterpart of one edge score of `feature_circuit`: the source node
(a latent at every position, an error term, or the input) is set to its source-run value *for the
target alone* (the target computed with every other node held at its base value), and the target
then replaced by what it computed there in an otherwise normal base run; the metric change is what
EAP estimates to first order (equal where the model is linear).

Faithfulness (Marks et al. 2024): on the clean prompts, every feature node outside the circuit (latents
at every position, error terms) is ablated, its value replaced by the corrupted run's
(`ablation="corrupted"`, per prompt and position) or by its mean over the clean prompts and positions
(`"mean"`); the circuit's nodes are computed from what reaches them. With m(C) the metric then,
m(M) the model's and m(empty) with every node ablated,

    faithfulness(C) = (m(C) - m(empty)) / (m(M) - m(empty)),   completeness(C) = the same for the
    complement (every circuit node ablated, the rest kept): near 0 when C carries all of the behaviour.

Curves take the top n nodes by |node score| for each size n.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp.base.errors import InputError
from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptPairs
from interp.dictionaries.base import Dictionary
from interp.engine.edits import Replace
from interp.engine.forward import forward
from interp.methods.contrastive import Direction, check_direction
from interp.methods.features.circuits import (
    FeatureCircuit,
    _prepare,
    check_dictionaries_for_circuits,
    leaf_run,
    node_labels,
    select_nodes,
)
from interp.methods.features.patching import spliced_for
from interp.model.loading import HookedPhi

Ablation = Literal["corrupted", "mean"]
ABLATIONS: tuple[Ablation, ...] = ("corrupted", "mean")


def _node(labels: list[str], name: str, what: str, allow_metric: bool = False) -> int:
    if allow_metric and name == "metric":
        return -1
    if name not in labels:
        allowed = "a node label (e.g. " + repr(labels[1]) + ")" + (" or 'metric'" if allow_metric else "")
        raise InputError(f"{what}={name!r} is not a node of this feature graph; use {allowed}.")
    return labels.index(name)


def _locate(sites, node: int):
    """(site, latent or None for the error node) of a feature node index."""
    site = next(s for s in sites if s.offset <= node < s.stop)
    return site, (None if node == site.stop - 1 else node - site.offset)


def patch_feature_edge(
    model: HookedPhi,
    dictionaries: Dictionary | Sequence[Dictionary],
    pairs: PromptPairs,
    source: str,
    target: str,
    metric: MetricKind | Metric = "logit_diff",
    *,
    direction: Direction = "denoising",
) -> Float[Tensor, " batch"]:
    """Per prompt, the exact metric change of patching the edge `source -> target` (node labels; the
    target may be "metric", the source "input"): see the module docstring."""
    direction = check_direction(direction)
    dictionaries = check_dictionaries_for_circuits(dictionaries)
    if not pairs.same_length:
        raise InputError("patch_feature_edge needs prompts of one token length.")
    with ExitStack() as stack, torch.no_grad():
        spliced = spliced_for(stack, model, dictionaries, True)
        runs, _ = _prepare(model, spliced, dictionaries, pairs, metric, direction)
        labels = node_labels(runs.sites)
        s = _node(labels, source, "source")
        t = _node(labels, target, "target", allow_metric=True)
        if t == 0:
            raise InputError("target='input' is not allowed: nothing is upstream of the input.")
        values = dict(runs.base)
        embed = runs.base_embed
        if s == 0:
            embed = runs.source_embed
        else:
            site, latent = _locate(runs.sites, s)
            if t != -1 and _locate(runs.sites, t)[0].offset <= site.offset:
                raise InputError(f"{source!r} is not upstream of {target!r}: edges go forward only.")
            if latent is None:
                values[site.error] = runs.source[site.error]
            else:
                acts = values[site.acts].clone()
                acts[..., latent] = runs.source[site.acts][..., latent]
                values[site.acts] = acts
        run, _, computed, _ = leaf_run(runs, embed, values)
        base_metric = runs.measure(forward(runs.w, runs.base_embed).logits(runs.w), runs.index)
        if t == -1:
            return (runs.measure(run.logits(runs.w), runs.index) - base_metric).detach().cpu()
        site, latent = _locate(runs.sites, t)
        if latent is None:
            edits = {site.error: Replace(computed[site.error].detach())}
        else:
            acts = runs.base[site.acts].clone()
            acts[..., latent] = computed[site.acts][..., latent].detach()
            edits = {site.acts: Replace(acts)}
        patched = runs.measure(forward(runs.w, runs.base_embed, edits).logits(runs.w), runs.index)
        return (patched - base_metric).cpu()


@dataclass(frozen=True)
class FaithfulnessCurve:
    """Faithfulness and completeness of the top-n node circuits, n in `sizes` (module docstring)."""

    sizes: list[int]
    faithfulness: list[float]
    completeness: list[float]
    full: float  # m(M): the model's metric on the clean prompts
    empty: float  # m(empty): every feature node ablated
    ablation: str

    def to_json(self) -> dict:
        return {
            "sizes": self.sizes,
            "faithfulness": self.faithfulness,
            "completeness": self.completeness,
            "full": self.full,
            "empty": self.empty,
            "ablation": self.ablation,
        }


def circuit_metric(
    model: HookedPhi,
    dictionaries: Dictionary | Sequence[Dictionary],
    pairs: PromptPairs,
    nodes: Sequence[str],
    metric: MetricKind | Metric = "logit_diff",
    *,
    ablation: Ablation = "corrupted",
) -> Float[Tensor, " batch"]:
    """Per prompt, the clean run's metric with every feature node outside `nodes` (labels) ablated."""
    return _metrics(model, dictionaries, pairs, [list(nodes)], metric, ablation, by_label=True)[0]


def feature_faithfulness(
    model: HookedPhi,
    dictionaries: Dictionary | Sequence[Dictionary],
    pairs: PromptPairs,
    circuit: FeatureCircuit,
    sizes: Sequence[int],
    metric: MetricKind | Metric = "logit_diff",
    *,
    ablation: Ablation = "corrupted",
) -> FaithfulnessCurve:
    """Faithfulness and completeness of the top-n nodes of `circuit` by |node score|, n in `sizes`."""
    if not isinstance(circuit, FeatureCircuit):
        raise InputError(f"circuit must be a FeatureCircuit (feature_circuit), not {type(circuit).__name__}.")
    sizes = list(sizes)
    if not sizes or any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in sizes):
        raise InputError(f"sizes={sizes!r} is not allowed; use a non-empty list of integers 0 or more.")
    every = list(range(1, len(circuit.labels)))
    chosen = [select_nodes(circuit.node_scores, top_k=n) for n in sizes]
    complements = [sorted(set(every) - set(c)) for c in chosen]
    values = _metrics(model, dictionaries, pairs, [every, []] + chosen + complements, metric, ablation)
    means = [float(v.mean()) for v in values]
    full, empty = means[0], means[1]
    span = full - empty
    if abs(span) <= 1e-12 * max(abs(full), abs(empty), 1.0):
        raise InputError(
            f"the metric is the same with every node kept ({full:.6g}) and every node ablated: "
            "faithfulness is undefined; choose prompts or an ablation that change the metric."
        )
    k = len(sizes)
    return FaithfulnessCurve(
        sizes,
        [(m - empty) / span for m in means[2 : 2 + k]],
        [(m - empty) / span for m in means[2 + k :]],
        full,
        empty,
        ablation,
    )


def _metrics(model, dictionaries, pairs, circuits, metric, ablation, by_label: bool = False) -> list[Tensor]:
    """The clean run's per-prompt metric with the nodes outside each circuit (node indices, or labels
    with `by_label`) ablated."""
    if ablation not in ABLATIONS:
        raise InputError(f"ablation={ablation!r} is not allowed; use 'corrupted' or 'mean'.")
    dictionaries = check_dictionaries_for_circuits(dictionaries)
    if not pairs.same_length:
        raise InputError("feature circuit evaluation needs prompts of one token length.")
    with ExitStack() as stack, torch.no_grad():
        spliced = spliced_for(stack, model, dictionaries, True)
        runs, _ = _prepare(model, spliced, dictionaries, pairs, metric, "denoising")  # base corrupted
        labels = node_labels(runs.sites)
        if ablation == "corrupted":
            replacement = runs.base
        else:
            replacement = {p: v.mean((0, 1)) for p, v in runs.source.items()}
        out = []
        for circuit in circuits:
            kept = {_node(labels, n, "nodes") for n in circuit} if by_label else set(circuit)
            kept.discard(0)
            edits = {}
            for site in runs.sites:
                latents = torch.tensor([site.offset + i in kept for i in range(site.d_sae)])
                mask = latents.to(runs.source_embed.device)
                value = replacement[site.acts]
                edits[site.acts] = _Where(mask, value)
                if site.stop - 1 not in kept:
                    edits[site.error] = Replace(replacement[site.error])
            run = forward(runs.w, runs.source_embed, edits)
            out.append(runs.measure(run.logits(runs.w), runs.index).cpu())
        return out


class _Where:
    """Keep the latents where `mask`, take `value` elsewhere."""

    def __init__(self, mask: Tensor, value: Tensor):
        self.mask, self.value = mask, value

    def __call__(self, tensor: Tensor, site) -> Tensor:
        return torch.where(self.mask, tensor, self.value.to(tensor.dtype))
