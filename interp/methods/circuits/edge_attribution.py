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
The set-up (length groups, which run is the base, the metric and the baselines) is the contrastive
core's (`interp.methods.contrastive.GroupStream`, run with this method's forward, one group at a time).
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptPairs
from interp.engine.forward import PhiWeights
from interp.engine.receiver_gradients import EdgeGradients, SenderRun, sender_deltas, sender_run
from interp.methods.circuits.graph import Graph
from interp.methods.circuits.scores import EdgeScores, reduce_scores
from interp.methods.contrastive import Direction, GroupStream, check_direction
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


def gradient_points(
    method: str, steps: int, rule: Rule, direction: Direction
) -> tuple[Direction, list[float]]:
    """The checked `direction` and the points a gradient scorer evaluates at, as fractions from the base
    run: the base alone for `method="eap"`, `integration_points` for `"eap_ig"`. Every option is checked
    whichever method is asked for, so a bad one is refused rather than ignored."""
    if method not in ("eap", "eap_ig"):
        raise InputError(f"method={method!r} is not allowed; use 'eap' or 'eap_ig'.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps={steps!r} is not allowed; use an integer 1 or more (the default is 5).")
    if rule not in RULES:
        raise InputError(f"rule={rule!r} is not allowed; use 'midpoint', 'left' or 'right'.")
    direction = check_direction(direction)
    return direction, [0.0] if method == "eap" else integration_points(steps, rule, direction)


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
    """`alphas` None: EAP (the gradient at the base run itself); else EAP-IG's interpolation points.

    The contrastive core runs both sides of each length group (`GroupStream`, one group at a time) with
    this method's forward: the source run without autograd, the base run with it when it is EAP's
    gradient run, so no forward is spent twice."""
    eap_base = alphas is None

    def run(
        w: PhiWeights, tokens: Int[Tensor, "batch pos"], is_base: bool
    ) -> tuple[SenderRun, Float[Tensor, "batch d_vocab"]]:
        record = is_base and eap_base
        with torch.enable_grad() if record else torch.no_grad():
            kept = sender_run(w, w.W_E[tokens].detach(), record=record)
        return kept, kept.logits.detach()

    stream = GroupStream(model, pairs, metric, direction, run, "edge attribution")
    w = stream.weights
    graph = Graph.of(w.n_layers, w.n_heads)
    parts = []
    for group in stream:
        index = group.index
        base, source = stream.base(group), stream.source(group)
        metric_fn = stream.metric()  # right for this group's rows (and those before)
        gradients = EdgeGradients(w)
        with torch.enable_grad():
            if eap_base:
                gradients.add(base, metric_fn(base.logits, index).sum())
            elif method == "eap_ig":
                for alpha in alphas:
                    point = base.embed + alpha * (source.embed - base.embed)
                    interpolated = sender_run(w, point, record=True)
                    gradients.add(interpolated, metric_fn(interpolated.logits, index).sum())
            else:
                _add_by_node(w, gradients, metric_fn, index, base, source, alphas)
        matrix = gradients.scores(sender_deltas(w, source, base))  # batch sender receiver
        del gradients, base, source, group
        parts.append((index, matrix[:, graph.mask.to(matrix.device)].T))
    core = stream.finish()
    n = len(pairs)
    return EdgeScores(
        graph,
        reduce_scores(parts, graph.n_edges, n, reduce),
        method,
        direction,
        core.metric.kind,
        core.clean_value,
        core.corrupted_value,
        per_prompt=reduce == "none",
        extra={"estimate_of": "patched metric - base metric", "d_model": w.W_E.shape[1]}
        | ({"steps": len(alphas), "rule": rule} if alphas else {}),
    )


def _add_by_node(
    w: PhiWeights,
    gradients: EdgeGradients,
    metric_fn: Metric,
    index: Int[Tensor, " batch"],
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

            def mix(b: Float[Tensor, " ..."], s: Float[Tensor, " ..."], alpha=alpha) -> Float[Tensor, " ..."]:
                return b + alpha * (s - b)

            def replace(
                at: int,
                z: Float[Tensor, "batch pos head d_head"],
                mlp_out: Float[Tensor, "batch pos d_model"],
                part=part,
                layer=layer,
                mix=mix,
            ):
                if at == layer and part == "heads":
                    z = mix(base.z[at], source.z[at])
                elif at == layer and part == "mlp":
                    mlp_out = mix(base.mlp_out[at], source.mlp_out[at])
                return z, mlp_out

            embed = mix(base.embed, source.embed) if part == "input" else base.embed
            run = sender_run(w, embed, replace=replace, record=True)
            gradients.add(run, metric_fn(run.logits, index).sum())
