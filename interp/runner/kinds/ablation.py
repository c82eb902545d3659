"""Ablating every head alone (`ablate_head`): one `Ablate` per head (`interp.methods.ablation.head_ablations`)
run by `interp.methods.ablation.ablation_sweep`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from interp.methods.vocabulary import HeadAblationMethod as Method
from interp.runner.options import AnalysisOptions
from interp.runner.registry import AnalysisSpec, Computed, Finished, UnitContext, fixed, register


class AblationOptions(AnalysisOptions):
    """`ablate_head`: the metric change when one head's output is removed, for every head."""

    kind: Literal["ablate_head"]
    method: Method = Field(
        "mean",
        description="how to ablate: zero, mean, resample, or counterfactual (resample from each pair's own corrupted prompt)",
    )
    reference: Literal["corrupted", "shuffled"] = Field(
        "corrupted",
        description="prompts that mean/resample ablation draws from: the pairs' corrupted prompts, or the "
        "clean prompts shuffled (not read with method = 'zero')",
    )

    def unread(self) -> dict[str, str]:
        if self.method == "zero":
            return {"reference": "zero ablation draws on no prompts"}
        if self.method == "counterfactual":
            return {"reference": "counterfactual ablation always draws on each pair's own corrupted prompt"}
        return {}


def _compute(options: AblationOptions, model, pairs, ctx: UnitContext) -> Computed:
    from interp.methods.ablation import ablation_sweep, head_ablations

    # one Ablate per head, in the vocabulary every method runs (interp.methods.interventions)
    ablations = head_ablations(model, options.method, ctx.seed)
    result = ablation_sweep(
        model,
        pairs,
        ablations,
        ctx.metric,
        reference=options.reference,
        reduce="none",
        memory_budget=ctx.memory_budget,
    )
    return Computed(result.dims, result.values)


def _finish(options: AblationOptions, mean, clean: float, corrupted: float) -> Finished:
    return Finished(mean, f"metric change when the head is {options.method}-ablated (ablated - clean)", 0.0)


register(
    AnalysisSpec(
        kind="ablate_head",
        summary="ablate every head alone (zero, mean, resample or counterfactual) on the clean prompts",
        explanation=(
            "Ablation: the metric change when one head's output is removed (negative = the head was helping). "
            "Unlike direct attribution this counts every path through which the head acts."
        ),
        per_prompt=True,
        options=AblationOptions,
        dims=fixed("layer", "head"),
        compute=_compute,
        finish=_finish,
        figures=("heatmap", "ranked_bars"),
    )
)
