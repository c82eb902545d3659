"""Edge attribution patching: EAP and EAP-IG, every edge's estimated effect from a few backward passes.

EAP (Syed et al. 2023) estimates an edge's effect linearly, at the base run:

    effect(s -> r) ~= (source_s - base_s) . d metric / d input_r

summed over positions and the residual width, where `input_r` is receiver r's own input (its own copy
of the residual stream, `interp.engine.receivers`). One forward and one backward pass give the
gradient at every receiver input; the sender differences come from the two runs of the contrastive
core. EAP-IG (Hanna et al. 2024, the "inputs" variant) replaces the gradient at the base run by its
mean along the straight line from the base run's input embeddings to the source run's, at `steps`
points (midpoints), which follows nonlinear effects much better; it costs `steps` forward and backward
passes. Scores use the sign convention of exact edge patching (patched metric - base metric), so the
two can be compared edge by edge.
"""

from __future__ import annotations

from typing import Literal

import einops
import torch
from torch import Tensor

from interp.base.errors import InputError
from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptPairs
from interp.engine.receivers import copies, run_receivers
from interp.methods.circuits.edge_patching import sender_outputs
from interp.methods.circuits.graph import Graph
from interp.methods.circuits.scores import EdgeScores, stack_scores
from interp.methods.contrastive import Contrast, Direction, LengthGroup, contrast
from interp.model.loading import HookedPhi


def _receiver_gradients(
    core: Contrast, group: LengthGroup, embed: Tensor, alphas: list[float]
) -> list[Tensor]:
    """Mean over `alphas` of d(summed metric)/d(receiver inputs), each layer's [batch receiver pos d_model]."""
    w = core.weights
    base, source = core.base(group), core.source(group)
    total: list[Tensor] | None = None
    for alpha in alphas:
        with torch.enable_grad():
            x = (base.resid_pre[0] + alpha * (source.resid_pre[0] - base.resid_pre[0])).detach()
            logits, inputs = run_receivers(w, x, _leaves(copies(w)))
            grads = torch.autograd.grad(core.measure(logits, group.index).sum(), inputs)
        total = (
            [g.detach() for g in grads]
            if total is None
            else [t + g for t, g in zip(total, grads, strict=True)]
        )
    assert total is not None
    return [t / len(alphas) for t in total]


def _leaves(inputs):
    """Receiver inputs that autograd can differentiate against (each layer's copies require grad)."""

    def make(layer: int, resid: Tensor, outputs: list[Tensor]) -> Tensor:
        x = inputs(layer, resid, outputs)
        if not x.requires_grad:
            x.requires_grad_(True)
        return x

    return make


def _scores(core: Contrast, group: LengthGroup, graph: Graph, grads: list[Tensor]) -> Tensor:
    """[edge, batch]: sender difference . receiver gradient, summed over positions and d_model."""
    w = core.weights
    deltas = sender_outputs(w, core.source(group)) - sender_outputs(w, core.base(group))
    matrix = torch.zeros(graph.n_forward, graph.n_backward, len(group.index), device=deltas.device)
    for layer, grad in enumerate(grads):
        n_senders = graph.senders_before(layer)
        block = graph.block_receivers(layer) if layer < w.n_layers else slice(graph.n_backward - 1, None)
        matrix[:n_senders, block] = einops.einsum(
            deltas[:n_senders].float(),
            grad.float(),
            "sender batch pos d_model, batch receiver pos d_model -> sender receiver batch",
        )
    return matrix[graph.mask]


def eap(
    model: HookedPhi,
    pairs: PromptPairs,
    metric: MetricKind | Metric = "logit_diff",
    *,
    direction: Direction = "noising",
    reduce: Literal["mean", "none"] = "mean",
) -> EdgeScores:
    """EAP: every edge's first-order estimate of (patched metric - base metric)."""
    return _attribute(model, pairs, metric, direction, reduce, [0.0], "eap")


def eap_ig(
    model: HookedPhi,
    pairs: PromptPairs,
    metric: MetricKind | Metric = "logit_diff",
    *,
    direction: Direction = "noising",
    steps: int = 5,
    reduce: Literal["mean", "none"] = "mean",
) -> EdgeScores:
    """EAP-IG (inputs): gradients averaged at `steps` points between the base and source input embeddings."""
    if steps < 1:
        raise InputError(f"steps={steps} is not allowed; use 1 or more (the method's default is 5).")
    alphas = [(k + 0.5) / steps for k in range(steps)]
    return _attribute(model, pairs, metric, direction, reduce, alphas, "eap_ig", {"steps": steps})


def _attribute(
    model: HookedPhi,
    pairs: PromptPairs,
    metric: MetricKind | Metric,
    direction: Direction,
    reduce: Literal["mean", "none"],
    alphas: list[float],
    method: str,
    extra: dict | None = None,
) -> EdgeScores:
    core = contrast(model, pairs, metric, direction=direction)
    w = core.weights
    graph = Graph(w.n_layers, w.n_heads)
    parts = []
    for group in core.groups:
        grads = _receiver_gradients(core, group, core.base(group).resid_pre[0], alphas)
        parts.append((group.index, _scores(core, group, graph, grads)))
    values = stack_scores(parts, graph.n_edges, len(pairs))
    return EdgeScores(
        graph,
        values.mean(-1) if reduce == "mean" else values,
        method,
        direction,
        core.metric.kind,
        core.clean_value,
        core.corrupted_value,
        per_prompt=reduce == "none",
        extra={"estimate_of": "patched metric - base metric", **(extra or {})},
    )
