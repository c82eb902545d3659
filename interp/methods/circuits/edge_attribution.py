"""Edge attribution patching: EAP and EAP-IG, every edge's estimated effect from a few backward passes.

EAP (Syed et al. 2023) estimates an edge's effect linearly, at the base run:

    effect(s -> r) ~= (source_s - base_s) . d metric / d input_r

summed over positions and the residual width, where `input_r` is what receiver r reads (the residual
stream before its LayerNorm; the gradient of each receiver is split out of one plain backward,
`interp.engine.receiver_gradients`). EAP-IG (Hanna et al. 2024, the "inputs" variant)
replaces the gradient at the base run by its mean along the straight line from the base run's input
embeddings to the source run's, at `steps` points (`rule`: midpoints by default, or the library's
left (inputs) or right (activations) Riemann points, `integration_points`), which follows nonlinear
effects much better. The "activations" variant (as EAP-IG's `ig-activations`, used in MIB) instead interpolates one
node group at a time (the embedding, a layer's heads, a layer's MLP) between its base and source
outputs, the rest of the run computed normally, and averages the gradients over every group and step
(`steps` x (1 + 2 x n_layers) passes). Scores use the sign convention of exact edge patching (patched
metric - base metric), so they compare edge by edge.

Cost: EAP is one forward of the source run (no gradient) and one forward and backward of the base run,
whose logits also give the baseline (and the clean distribution a KL metric needs when noising), so no
forward is spent twice. EAP-IG is a source forward, a base forward and `steps` forwards and backwards;
the per-receiver gradients are summed over the steps and scored once.
Which run is the base is decided, as everywhere, by `interp.methods.contrastive.base_and_source`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from interp.base.errors import InputError
from interp.data.metrics import Metric, MetricKind, resolve_metric
from interp.data.prompts import PromptPairs
from interp.engine.forward import PhiWeights
from interp.engine.receiver_gradients import EdgeGradients, SenderRun, sender_deltas, sender_run
from interp.methods.circuits.graph import Graph
from interp.methods.circuits.scores import EdgeScores, reduce_scores
from interp.methods.contrastive import (
    Direction,
    base_and_source,
    check_direction,
    check_inputs,
    clean_and_corrupted,
)
from interp.model.loading import HookedPhi

Rule = Literal["midpoint", "left", "right"]
RULES: tuple[Rule, ...] = ("midpoint", "left", "right")


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
    rule: Rule = "midpoint",
    reduce: Literal["mean", "none"] = "mean",
) -> EdgeScores:
    """EAP-IG: gradients averaged at `steps` points between the base and source runs (module docstring);
    `rule` places the points (`integration_points`)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps={steps!r} is not allowed; use an integer 1 or more (the default is 5).")
    if variant not in ("inputs", "activations"):
        raise InputError(f"variant={variant!r} is not allowed; use 'inputs' or 'activations'.")
    alphas = integration_points(steps, rule, check_direction(direction))
    method = "eap_ig" if variant == "inputs" else "eap_ig_activations"
    return _attribute(model, pairs, metric, direction, reduce, alphas, method, rule)


def integration_points(steps: int, rule: Rule, direction: Direction) -> list[float]:
    """EAP-IG's `steps` points as fractions of the way from the base run to the source run.

    The rules are stated along t, the fraction of the way from the corrupted run to the clean one (the
    library's parameter): `midpoint` t = (k + 1/2)/m, the midpoint Riemann sum, whose error falls as
    1/m^2 (the default: the most accurate for a given number of steps); `left` t = k/m, k = 0..m-1, the
    points of EAP-IG's `EAP-IG-inputs` (`corrupted + (k/m)(clean - corrupted)`); `right` t = k/m,
    k = 1..m, the points of EAP-IG's `ig-activations`. Left and right sums err as 1/m. The base is the
    clean run when noising, so there the fraction from the base is 1 - t.
    """
    if rule not in RULES:
        raise InputError(f"rule={rule!r} is not allowed; use 'midpoint', 'left' or 'right'.")
    offset = {"midpoint": 0.5, "left": 0.0, "right": 1.0}[rule]
    ts = [(k + offset) / steps for k in range(steps)]
    if rule == "midpoint":
        return ts  # symmetric: the same points from either end
    return sorted(t if direction == "denoising" else 1.0 - t for t in ts)


def _attribute(
    model: HookedPhi,
    pairs: PromptPairs,
    metric: MetricKind | Metric,
    direction: Direction,
    reduce: Literal["mean", "none"],
    alphas: list[float] | None,
    method: str,
    rule: Rule | None = None,
) -> EdgeScores:
    """`alphas` None: EAP (the gradient at the base run itself); else EAP-IG's interpolation points."""
    check_inputs(model, pairs, "edge attribution")
    check_direction(direction)
    w = PhiWeights.from_model(model)
    graph = Graph.of(w.n_layers, w.n_heads)
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
        base_embed, source_embed = w.W_E[base_tokens].detach(), w.W_E[source_tokens].detach()
        with torch.no_grad():
            source = sender_run(w, source_embed)
        gradients = EdgeGradients(w)
        with torch.enable_grad():
            if alphas is None:  # EAP: the gradient run is the base run
                base = sender_run(w, base_embed, record=True)
            else:
                with torch.no_grad():
                    base = sender_run(w, base_embed)
            clean, corrupted = clean_and_corrupted(base.logits.detach(), source.logits, direction)
            finals["clean"][index.to(device)] = clean.float()
            finals["corrupted"][index.to(device)] = corrupted.float()
            metric_fn = resolve_metric(metric, pairs, finals["clean"])  # reads only this group's rows
            if alphas is None:
                gradients.add(base, metric_fn(base.logits, index).sum())
            elif method == "eap_ig":
                for alpha in alphas:
                    run = sender_run(w, base_embed + alpha * (source_embed - base_embed), record=True)
                    gradients.add(run, metric_fn(run.logits, index).sum())
            else:
                _add_by_node(w, gradients, metric_fn, index, base, source, alphas)
        matrix = gradients.scores(sender_deltas(w, source, base))  # batch sender receiver
        del gradients, base
        parts.append((index, matrix[:, graph.mask.to(matrix.device)].T))
    metric_fn = resolve_metric(metric, pairs, finals["clean"])
    everyone = torch.arange(n)
    return EdgeScores(
        graph,
        reduce_scores(parts, graph.n_edges, n, reduce),
        method,
        direction,
        metric_fn.kind,
        metric_fn(finals["clean"], everyone).mean().item(),
        metric_fn(finals["corrupted"], everyone).mean().item(),
        per_prompt=reduce == "none",
        extra={"estimate_of": "patched metric - base metric", "d_model": w.W_E.shape[1]}
        | ({"steps": len(alphas), "rule": rule} if alphas else {}),
    )


def _add_by_node(
    w: PhiWeights,
    gradients: EdgeGradients,
    metric_fn: Metric,
    index: Tensor,
    base: SenderRun,
    source: SenderRun,
    alphas: list[float],
) -> None:
    """Gradients at every receiver input over node groups (input, each layer's heads, each MLP) and
    steps, the group's output interpolated between base and source, everything else computed normally.
    (A head's output is linear in its `z`, so interpolating `z` interpolates what it writes.)"""
    groups = [("input", None)] + [(part, layer) for layer in range(w.n_layers) for part in ("heads", "mlp")]
    for part, layer in groups:
        for alpha in alphas:

            def mix(b: Tensor, s: Tensor, alpha=alpha) -> Tensor:
                return b + alpha * (s - b)

            def replace(at: int, z: Tensor, mlp_out: Tensor, part=part, layer=layer, mix=mix):
                if at == layer and part == "heads":
                    z = mix(base.z[at], source.z[at])
                elif at == layer and part == "mlp":
                    mlp_out = mix(base.mlp_out[at], source.mlp_out[at])
                return z, mlp_out

            embed = mix(base.embed, source.embed) if part == "input" else base.embed
            run = sender_run(w, embed, replace=replace, record=True)
            gradients.add(run, metric_fn(run.logits, index).sum())
