"""Edge attribution patching: EAP and EAP-IG, every edge's estimated effect from a few backward passes.

EAP (Syed et al. 2023) estimates an edge's effect linearly, at the base run:

    effect(s -> r) ~= (source_s - base_s) . d metric / d input_r

summed over positions and the residual width, where `input_r` is receiver r's own input (its own copy
of the residual stream, `interp.engine.receivers`). EAP-IG (Hanna et al. 2024, the "inputs" variant)
replaces the gradient at the base run by its mean along the straight line from the base run's input
embeddings to the source run's, at `steps` points (midpoints), which follows nonlinear effects much
better. The "activations" variant (as EAP-IG's `ig-activations`, used in MIB) instead interpolates one
node group at a time (the embedding, a layer's heads, a layer's MLP) between its base and source
outputs, the rest of the run computed normally, and averages the gradients over every group and step
(`steps` x (1 + 2 x n_layers) passes). Scores use the sign convention of exact edge patching (patched
metric - base metric), so they compare edge by edge.

Cost: EAP is one forward of the source run (no gradient) and one forward and backward of the base run,
whose logits also give the baseline (and the clean distribution a KL metric needs when noising), so no
forward is spent twice. EAP-IG is a source forward, a base forward and `steps` forwards and backwards.
Which run is the base is decided, as everywhere, by `interp.methods.contrastive.base_and_source`.
"""

from __future__ import annotations

from typing import Literal

import einops
import torch
from torch import Tensor

from interp.base.errors import InputError
from interp.data.metrics import Metric, MetricKind, resolve_metric
from interp.data.prompts import PromptPairs
from interp.engine.forward import PhiWeights, run_with_cache
from interp.engine.receivers import InputsFn, copies, run_receivers
from interp.methods.circuits.edge_patching import sender_outputs
from interp.methods.circuits.graph import Graph
from interp.methods.circuits.scores import EdgeScores, stack_scores
from interp.methods.contrastive import (
    Direction,
    base_and_source,
    check_direction,
    check_inputs,
    clean_and_corrupted,
)
from interp.model.loading import HookedPhi


def _leaves(inputs: InputsFn) -> InputsFn:
    """Receiver inputs that autograd can differentiate against (each layer's copies require grad)."""

    def make(layer: int, resid: Tensor, outputs: list[Tensor]) -> Tensor:
        x = inputs(layer, resid, outputs)
        return x if x.requires_grad else x.requires_grad_(True)

    return make


def _scores(graph: Graph, deltas: Tensor, grads: list[Tensor]) -> Tensor:
    """[edge, batch]: sender difference . receiver gradient, summed over positions and d_model."""
    matrix = torch.zeros(graph.n_forward, graph.n_backward, deltas.shape[1], device=deltas.device)
    for layer, grad in enumerate(grads):
        n_senders = graph.senders_before(layer)
        block = graph.block_receivers(layer) if layer < graph.n_layers else slice(graph.n_backward - 1, None)
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
    return _attribute(model, pairs, metric, direction, reduce, None, "eap")


def eap_ig(
    model: HookedPhi,
    pairs: PromptPairs,
    metric: MetricKind | Metric = "logit_diff",
    *,
    direction: Direction = "noising",
    steps: int = 5,
    variant: Literal["inputs", "activations"] = "inputs",
    reduce: Literal["mean", "none"] = "mean",
) -> EdgeScores:
    """EAP-IG: gradients averaged at `steps` points between the base and source runs (module docstring)."""
    if steps < 1:
        raise InputError(f"steps={steps} is not allowed; use 1 or more (the method's default is 5).")
    if variant not in ("inputs", "activations"):
        raise InputError(f"variant={variant!r} is not allowed; use 'inputs' or 'activations'.")
    alphas = [(k + 0.5) / steps for k in range(steps)]
    method = "eap_ig" if variant == "inputs" else "eap_ig_activations"
    return _attribute(model, pairs, metric, direction, reduce, alphas, method)


def _attribute(
    model: HookedPhi,
    pairs: PromptPairs,
    metric: MetricKind | Metric,
    direction: Direction,
    reduce: Literal["mean", "none"],
    alphas: list[float] | None,
    method: str,
) -> EdgeScores:
    """`alphas` None: EAP (the gradient at the base run itself); else EAP-IG's interpolation points."""
    check_inputs(model, pairs, "edge attribution")
    check_direction(direction)
    w = PhiWeights.from_model(model)
    graph = Graph(w.n_layers, w.n_heads)
    device = model.cfg.device
    n, d_vocab = len(pairs), w.W_U.shape[0]
    finals = {
        "clean": torch.zeros(n, d_vocab, device=device),
        "corrupted": torch.zeros(n, d_vocab, device=device),
    }
    parts = []
    for index in pairs.length_groups():
        group = pairs.select(index)
        base_tokens, source_tokens = base_and_source(
            group.clean_tokens.to(device), group.corrupted_tokens.to(device), direction
        )
        source = run_with_cache(w, source_tokens)
        source_outputs = sender_outputs(w, source)
        base_embed = w.W_E[base_tokens].detach()
        with torch.enable_grad():
            if alphas is None:  # EAP: the gradient run is the base run
                logits, inputs, outputs = run_receivers(w, base_embed, _leaves(copies(w)))
                base_logits, base_outputs = logits.detach(), torch.stack(outputs).detach()
            else:
                base = run_with_cache(w, base_tokens)
                base_logits, base_outputs = base.final_logits, sender_outputs(w, base)
            clean, corrupted = clean_and_corrupted(base_logits, source.final_logits, direction)
            finals["clean"][index.to(device)] = clean.float()
            finals["corrupted"][index.to(device)] = corrupted.float()
            metric_fn = resolve_metric(metric, pairs, finals["clean"])  # reads only this group's rows
            if alphas is None:
                grads = torch.autograd.grad(metric_fn(logits, index).sum(), inputs)
            elif method == "eap_ig":
                source_embed = w.W_E[source_tokens].detach()
                grads = _mean_gradients(w, metric_fn, index, base_embed, source_embed, alphas)
            else:
                grads = _mean_gradients_by_node(
                    w, metric_fn, index, base_embed, base_outputs, source_outputs, alphas
                )
        deltas = source_outputs - base_outputs
        parts.append((index, _scores(graph, deltas, [g.detach() for g in grads])))
    metric_fn = resolve_metric(metric, pairs, finals["clean"])
    everyone = torch.arange(n)
    values = stack_scores(parts, graph.n_edges, n)
    return EdgeScores(
        graph,
        values.mean(-1) if reduce == "mean" else values,
        method,
        direction,
        metric_fn.kind,
        metric_fn(finals["clean"], everyone).mean().item(),
        metric_fn(finals["corrupted"], everyone).mean().item(),
        per_prompt=reduce == "none",
        extra={"estimate_of": "patched metric - base metric"} | ({"steps": len(alphas)} if alphas else {}),
    )


def _mean_gradients(
    w: PhiWeights,
    metric_fn: Metric,
    index: Tensor,
    base_embed: Tensor,
    source_embed: Tensor,
    alphas: list[float],
) -> list[Tensor]:
    """Mean over `alphas` of d(summed metric)/d(receiver inputs) along the embeddings' straight line."""
    total: list[Tensor] | None = None
    for alpha in alphas:
        embed = base_embed + alpha * (source_embed - base_embed)
        logits, inputs, _ = run_receivers(w, embed, _leaves(copies(w)))
        grads = [g.detach() for g in torch.autograd.grad(metric_fn(logits, index).sum(), inputs)]
        total = grads if total is None else [t + g for t, g in zip(total, grads, strict=True)]
    return [t / len(alphas) for t in total]


def _mean_gradients_by_node(
    w: PhiWeights,
    metric_fn: Metric,
    index: Tensor,
    base_embed: Tensor,
    base_outputs: Tensor,
    source_outputs: Tensor,
    alphas: list[float],
) -> list[Tensor]:
    """Mean gradient at every receiver input over node groups (input, each layer's heads, each MLP) and
    steps, the group's output interpolated between base and source, everything else computed normally."""
    H = w.n_heads
    total: list[Tensor] | None = None
    count = 0
    groups = [("input", None)] + [(part, layer) for layer in range(w.n_layers) for part in ("heads", "mlp")]
    for part, layer in groups:
        for alpha in alphas:
            mix = base_outputs + alpha * (source_outputs - base_outputs)  # sender batch pos d_model

            def replace(at: int, heads: Tensor, mlp_out: Tensor, part=part, layer=layer, mix=mix):
                first = 1 + at * (H + 1)
                if at == layer and part == "heads":
                    heads = mix[first : first + H]
                elif at == layer and part == "mlp":
                    mlp_out = mix[first + H]
                return heads, mlp_out

            embed = mix[0] if part == "input" else base_embed
            logits, inputs, _ = run_receivers(w, embed, _leaves(copies(w)), replace)
            grads = [g.detach() for g in torch.autograd.grad(metric_fn(logits, index).sum(), inputs)]
            total = grads if total is None else [t + g for t, g in zip(total, grads, strict=True)]
            count += 1
    return [t / count for t in total]
