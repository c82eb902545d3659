"""Each analysis kind of an experiment config, computed on one batch of prompt pairs.

`compute(kind, ...)` returns per-prompt values (last axis = the batch's prompts) so that batches
can be computed, saved and resumed independently and averaged at the end; `finish` turns the
averaged values into what results.json reports, with a plain-language description.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from interp.config import AnalysisConfig, ExperimentConfig
from interp.metrics import normalise
from interp.prompts import PromptPairs

SWEEP_SITES = {
    "patch_resid_pre": "resid_pre",
    "patch_attn_out": "attn_out",
    "patch_mlp_out": "mlp_out",
    "patch_head_out": "head_out",
    "patch_head_q": "head_q",
    "patch_head_k": "head_k",
    "patch_head_v": "head_v",
    "patch_head_pattern": "head_pattern",
    "patch_head_out_by_pos": "head_out_by_pos",
}
ATTRIBUTION_SITES = {"attrib_head_out": "head_out", "attrib_resid_pre": "resid_pre"}
PER_PROMPT = (
    set(SWEEP_SITES)
    | set(ATTRIBUTION_SITES)
    | {"path_patch", "dla_head", "dla_layer", "logit_lens", "ablate_head"}
)


@dataclass
class Computed:
    dims: tuple[str, ...]
    values: Tensor  # [...dims, batch] for per-prompt kinds, [...dims] otherwise
    labels: dict[str, list[str]] | None = None


def compute(analysis: AnalysisConfig, model, pairs: PromptPairs, config: ExperimentConfig) -> Computed:
    kind = analysis.kind
    metric = config.task.metric
    budget = config.memory_budget_mb * 1024**2
    if kind in SWEEP_SITES:
        from interp.patching import sweep

        result = sweep(
            model,
            pairs,
            SWEEP_SITES[kind],
            metric,
            direction=analysis.direction,
            reduce="none",
            memory_budget=budget,
        )
        return Computed(result.dims, result.values)
    if kind in ATTRIBUTION_SITES:
        from interp.attribution_patching import attribution_patch

        result = attribution_patch(model, pairs, metric, direction=analysis.direction, reduce="none")
        site = result[ATTRIBUTION_SITES[kind]]
        return Computed(site.dims, site.values)
    if kind == "path_patch":
        from interp.path_patching import path_patch

        senders = analysis.senders or None
        result = path_patch(
            model,
            pairs,
            analysis.receivers,
            receiver_input=analysis.receiver_input,
            senders=senders,
            metric=metric,
            direction=analysis.direction,
            reduce="none",
        )
        return Computed(result.dims, result.values)
    if kind in ("dla_head", "dla_layer"):
        from interp.attribution import direct_logit_attribution

        dla = direct_logit_attribution(model, pairs)
        if kind == "dla_head":
            return Computed(("layer", "head"), dla.heads)
        return Computed(
            ("layer", "component"), torch.stack([dla.attn, dla.mlp], dim=1), {"component": ["attn", "mlp"]}
        )
    if kind == "logit_lens":
        from interp.attribution import logit_lens

        lens = logit_lens(model, pairs)
        return Computed(("layer",), lens.logit_diff, {"layer": lens.labels})
    if kind == "ablate_head":
        from interp.ablation import ablation_sweep

        result = ablation_sweep(
            model,
            pairs,
            analysis.method,
            metric,
            reference=analysis.reference,
            seed=config.seed,
            reduce="none",
        )
        return Computed(result.dims, result.values)
    if kind == "head_scores":
        from interp.heads import head_scores

        return Computed(("layer", "head"), head_scores(model, seed=config.seed)[analysis.score])
    raise ValueError(f"unknown analysis kind {kind!r}")


def finish(
    analysis: AnalysisConfig, mean_values: Tensor, clean: float, corrupted: float
) -> tuple[Tensor, str]:
    """What results.json reports for an analysis, and what one value means."""
    kind = analysis.kind
    if kind in SWEEP_SITES or kind == "path_patch":
        what = (
            "patched into the corrupted run"
            if analysis.direction == "denoising"
            else "patched into the clean run"
        )
        if kind == "path_patch":
            what = f"path patching to {analysis.receivers} ({analysis.receiver_input})"
        return normalise(mean_values, clean, corrupted), (
            f"normalised patching effect, (patched - corrupted) / (clean - corrupted), {what}: "
            "1 = the clean metric is restored, 0 = no change"
        )
    if kind in ATTRIBUTION_SITES:
        return mean_values / (clean - corrupted), (
            "attribution-patching estimate of the normalised patching effect, "
            "(estimated patched - base) / (clean - corrupted)"
        )
    if kind == "dla_head":
        return mean_values, "direct logit attribution: what the head writes into logit(answer) - logit(wrong)"
    if kind == "dla_layer":
        return mean_values, "direct logit attribution of each layer's attention and MLP output"
    if kind == "logit_lens":
        return mean_values, "logit(answer) - logit(wrong) decoded from the residual stream after each layer"
    if kind == "ablate_head":
        return mean_values, f"metric change when the head is {analysis.method}-ablated (ablated - clean)"
    if kind == "head_scores":
        return (
            mean_values,
            f"{analysis.score.replace('_', '-')} attention score (0..1) on repeated random tokens",
        )
    raise ValueError(kind)
