"""Attention-pattern scores of every head (`head_scores`): `interp.methods.head_scores.head_scores`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from interp.runner.options import AnalysisOptions
from interp.runner.registry import AnalysisSpec, Computed, Finished, UnitContext, fixed, register

ScoreKind = Literal["previous_token", "induction", "duplicate_token", "first_token"]  # the method's


class HeadScoreOptions(AnalysisOptions):
    """`head_scores`: one attention-pattern score per head, on repeated random tokens."""

    kind: Literal["head_scores"]
    score: ScoreKind = Field("induction", description="which score")


def _compute(options: HeadScoreOptions, model, pairs, ctx: UnitContext) -> Computed:
    from interp.methods.head_scores import head_scores

    return Computed(("layer", "head"), head_scores(model, seed=ctx.seed)[options.score])


def _finish(options: HeadScoreOptions, mean, clean: float, corrupted: float) -> Finished:
    name = options.score.replace("_", "-")
    return Finished(mean, f"{name} attention score (0..1) on repeated random tokens", 0.0)


register(
    AnalysisSpec(
        kind="head_scores",
        summary="previous-token, induction, duplicate-token or first-token score of every head",
        explanation="Attention-pattern score of each head on repeated random tokens (0 to 1).",
        per_prompt=False,
        options=HeadScoreOptions,
        dims=fixed("layer", "head"),
        compute=_compute,
        finish=_finish,
        figures=("scores_heatmap",),
    )
)
