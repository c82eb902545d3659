"""Checking a feature circuit: exact edge patching, and faithfulness and completeness curves.

`patch_feature_edge` is the exact counterpart of one edge score of `feature_circuit`: the source node
(a latent at every position, an error term, or the input) is set to its source-run value *for the
target alone* (the target computed with every other node held at its base value), and the target
then replaced by what it computed there in an otherwise normal base run; the metric change is what
EAP estimates to first order (equal where the model is linear).

Faithfulness (Marks et al. 2024): on the clean prompts, every feature node outside the circuit (latents
at every position, error terms) is ablated, its value replaced by the corrupted run's
(`ablation="corrupted"`, per prompt and position) or by its mean over the clean prompts and positions
(`"mean"`; `mean_over="corrupted"`: over the corrupted ones, as node ablation's default), the values
`interp.methods.interventions.ablation_values` gives (the code the vocabulary's `Ablate` runs); the
circuit's nodes are computed from what reaches them. With m(C) the metric then,
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
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptPairs
from interp.dictionaries.base import Dictionary
from interp.engine.edits import Keep, Replace
from interp.engine.forward import PhiWeights, forward
from interp.methods.circuits.graph import FeatureSite
from interp.methods.contrastive import Direction, base_and_source, check_direction, contrast
from interp.methods.features.circuits import (
    FeatureCircuit,
    check_dictionaries_for_circuits,
    feature_sites,
    node_labels,
    select_nodes,
)
from interp.methods.features.patching import spliced_for
from interp.methods.hooked_run import engine_gather
from interp.methods.interventions import ablation_values
from interp.methods.vocabulary import MeanOver, check_mean_over
from interp.model.loading import HookedPhi

Ablation = Literal["corrupted", "mean"]
ABLATIONS: tuple[Ablation, ...] = ("corrupted", "mean")


def _acts(site: FeatureSite) -> str:
    return f"{site.writes}.dict.hook_acts"


def _error(site: FeatureSite) -> str:
    return f"{site.writes}.dict.hook_error"


@dataclass
class _Runs:
    """The spliced model's weights, its feature sites (every latent) and node labels, the metric, and
    both runs' embeddings and values at every site's latents and error term."""

    w: PhiWeights
    sites: list[FeatureSite]
    labels: list[str]
    measure: Metric
    index: Int[Tensor, " batch"]
    base_embed: Float[Tensor, "batch pos d_model"]
    source_embed: Float[Tensor, "batch pos d_model"]
    base: dict[str, Tensor]
    source: dict[str, Tensor]

    @property
    def points(self) -> list[str]:
        return [p for site in self.sites for p in (_acts(site), _error(site))]

    def locate(self, node: int) -> tuple[int, int | None]:
        """(site index, latent or None for the error term) of a feature node index (not the input)."""
        first = 1
        for k, site in enumerate(self.sites):
            if node < first + len(site.latents) + 1:
                return k, (None if node == first + len(site.latents) else node - first)
            first += len(site.latents) + 1
        raise IndexError(node)

    def metric(self, embed: Float[Tensor, "batch pos d_model"], edits: dict) -> Float[Tensor, " batch"]:
        return self.measure(forward(self.w, embed, edits).logits(self.w), self.index)


def _prepare(
    stack: ExitStack, model: HookedPhi, dictionaries, pairs: PromptPairs, metric, direction, what: str
) -> _Runs:
    """The splice (entered on `stack`), the metric and both runs' values at every site."""
    dictionaries = check_dictionaries_for_circuits(dictionaries)
    if not pairs.same_length:
        raise InputError(f"{what} needs prompts of one token length.")
    spliced = spliced_for(stack, model, dictionaries, True)
    sites = feature_sites([spliced.entry(d) for d in dictionaries])
    core = contrast(model, pairs, metric, direction=direction, keep="logits")
    w = PhiWeights.from_model(model)
    device = w.W_E.device
    tokens = base_and_source(pairs.clean_tokens, pairs.corrupted_tokens, direction)
    embeds = [w.W_E[t.to(device)].detach() for t in tokens]
    points = [p for site in sites for p in (_acts(site), _error(site))]
    gather = engine_gather(model, w)  # each site's values, gathered as the engine's Ablate gathers
    values = [gather(t, points) for t in tokens]
    return _Runs(w, sites, node_labels(sites), core.metric, core.everyone, *embeds, *values)


def _node(labels: list[str], name: str, what: str, allow_metric: bool = False) -> int:
    if allow_metric and name == "metric":
        return -1
    if name not in labels:
        allowed = "a node label (e.g. " + repr(labels[1]) + ")" + (" or 'metric'" if allow_metric else "")
        raise InputError(f"{what}={name!r} is not a node of this feature graph; use {allowed}.")
    return labels.index(name)


@torch.no_grad()
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
    with ExitStack() as stack:
        runs = _prepare(stack, model, dictionaries, pairs, metric, direction, "patch_feature_edge")
        s = _node(runs.labels, source, "source")
        t = _node(runs.labels, target, "target", allow_metric=True)
        if t == 0:
            raise InputError("target='input' is not allowed: nothing is upstream of the input.")
        values, embed = dict(runs.base), runs.base_embed
        if s == 0:
            embed = runs.source_embed
        else:
            k, latent = runs.locate(s)
            if t != -1 and runs.locate(t)[0] <= k:
                raise InputError(f"{source!r} is not upstream of {target!r}: edges go forward only.")
            site = runs.sites[k]
            if latent is None:
                values[_error(site)] = runs.source[_error(site)]
            else:
                acts = values[_acts(site)].clone()
                acts[..., latent] = runs.source[_acts(site)][..., latent]
                values[_acts(site)] = acts
        # every node frozen at its base value but the source; what each node computes from that kept
        computed: dict[str, Tensor] = {}
        edits = {p: [Keep(computed), Replace(values[p])] for p in runs.points}
        frozen = runs.metric(embed, edits)
        base_metric = runs.metric(runs.base_embed, {})
        if t == -1:
            return (frozen - base_metric).cpu()
        k, latent = runs.locate(t)
        site = runs.sites[k]
        if latent is None:
            edits = {_error(site): Replace(computed[_error(site)])}
        else:
            acts = runs.base[_acts(site)].clone()
            acts[..., latent] = computed[_acts(site)][..., latent]
            edits = {_acts(site): Replace(acts)}
        return (runs.metric(runs.base_embed, edits) - base_metric).cpu()


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
    mean_over: MeanOver | None = None,
) -> Float[Tensor, " batch"]:
    """Per prompt, the clean run's metric with every feature node outside `nodes` (labels) ablated
    (`mean_over`: the prompts `ablation="mean"` averages, "clean" by default, or "corrupted")."""
    return _metrics(model, dictionaries, pairs, [list(nodes)], metric, ablation, mean_over, by_label=True)[0]


def feature_faithfulness(
    model: HookedPhi,
    dictionaries: Dictionary | Sequence[Dictionary],
    pairs: PromptPairs,
    circuit: FeatureCircuit,
    sizes: Sequence[int],
    metric: MetricKind | Metric = "logit_diff",
    *,
    ablation: Ablation = "corrupted",
    mean_over: MeanOver | None = None,
) -> FaithfulnessCurve:
    """Faithfulness and completeness of the top-n nodes of `circuit` by |node score|, n in `sizes`
    (`mean_over` as for `circuit_metric`)."""
    if not isinstance(circuit, FeatureCircuit):
        raise InputError(f"circuit must be a FeatureCircuit (feature_circuit), not {type(circuit).__name__}.")
    sizes = list(sizes)
    if not sizes or any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in sizes):
        raise InputError(f"sizes={sizes!r} is not allowed; use a non-empty list of integers 0 or more.")
    every = list(range(1, len(circuit.labels)))
    chosen = [select_nodes(circuit.node_scores, top_k=n) for n in sizes]
    complements = [sorted(set(every) - set(c)) for c in chosen]
    circuits = [every, []] + chosen + complements
    values = _metrics(model, dictionaries, pairs, circuits, metric, ablation, mean_over)
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


def _metrics(
    model, dictionaries, pairs, circuits, metric, ablation, mean_over, by_label: bool = False
) -> list[Tensor]:
    """The clean run's per-prompt metric with the nodes outside each circuit (node indices, or labels
    with `by_label`) ablated."""
    if ablation not in ABLATIONS:
        raise InputError(f"ablation={ablation!r} is not allowed; use 'corrupted' or 'mean'.")
    side = check_mean_over(mean_over, ablation, "clean", "ablation")
    with ExitStack() as stack, torch.no_grad():
        # base corrupted, source clean
        runs = _prepare(stack, model, dictionaries, pairs, metric, "denoising", "feature circuit evaluation")
        reference = runs.source if ablation == "mean" and side == "clean" else runs.base
        method = "mean" if ablation == "mean" else "counterfactual"
        replacement = {p: ablation_values(method, [v])[0] for p, v in reference.items()}
        out = []
        for circuit in circuits:
            kept = {_node(runs.labels, n, "nodes") for n in circuit} if by_label else set(circuit)
            kept.discard(0)
            edits, first = {}, 1
            for site in runs.sites:
                n = len(site.latents)
                mask = torch.tensor([first + i in kept for i in range(n)], device=runs.source_embed.device)
                edits[_acts(site)] = _Where(mask, replacement[_acts(site)])
                if first + n not in kept:
                    edits[_error(site)] = Replace(replacement[_error(site)])
                first += n + 1
            out.append(runs.metric(runs.source_embed, edits).cpu())
        return out


class _Where:
    """Keep the latents where `mask`, take `value` elsewhere."""

    def __init__(self, mask: Bool[Tensor, " d_sae"], value: Float[Tensor, "batch pos d_sae"]):
        self.mask, self.value = mask, value

    def __call__(self, tensor: Float[Tensor, "batch pos d_sae"], site) -> Float[Tensor, "batch pos d_sae"]:
        return torch.where(self.mask, tensor, self.value.to(tensor.dtype))
