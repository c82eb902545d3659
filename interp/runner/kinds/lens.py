"""Direct logit attribution (`dla_head`, `dla_layer`) and the logit lens (`logit_lens`): no options."""

from __future__ import annotations

from typing import Literal

from interp.runner.options import AnalysisOptions
from interp.runner.registry import AnalysisSpec, Computed, Finished, UnitContext, fixed, register

DLA_EXPLANATION = (
    "Direct logit attribution: how much each component writes, directly, into logit(answer) - logit(wrong) at "
    "the final position. Components that act through later layers can matter a lot and still score low here."
)


class LensOptions(AnalysisOptions):
    """`dla_head`, `dla_layer`, `logit_lens`: read the clean run; nothing to choose."""

    kind: Literal["dla_head", "dla_layer", "logit_lens"]


def _dla_head(options: LensOptions, model, pairs, ctx: UnitContext) -> Computed:
    import einops

    from interp.methods.direct_logit_attribution import direct_logit_attribution

    heads = direct_logit_attribution(model, pairs).heads  # the store keeps the batch last
    return Computed(("layer", "head"), einops.rearrange(heads, "batch layer head -> layer head batch"))


def _dla_layer(options: LensOptions, model, pairs, ctx: UnitContext) -> Computed:
    import einops

    from interp.methods.direct_logit_attribution import direct_logit_attribution

    dla = direct_logit_attribution(model, pairs)
    values = einops.rearrange([dla.attn, dla.mlp], "component batch layer -> layer component batch")
    return Computed(("layer", "component"), values, {"component": ["attn", "mlp"]})


def _lens(options: LensOptions, model, pairs, ctx: UnitContext) -> Computed:
    from interp.methods.logit_lens import logit_lens

    lens = logit_lens(model, pairs)
    return Computed(("layer",), lens.logit_diff, {"layer": lens.labels})


def as_is(description: str, no_effect: float | None = 0.0):
    """A finish that reports the mean values as they are."""
    return lambda options, mean, clean, corrupted: Finished(mean, description, no_effect)


register(
    AnalysisSpec(
        kind="dla_head",
        summary="direct logit attribution of every head",
        explanation=DLA_EXPLANATION,
        per_prompt=True,
        options=LensOptions,
        dims=fixed("layer", "head"),
        compute=_dla_head,
        finish=as_is("direct logit attribution: what the head writes into logit(answer) - logit(wrong)"),
        figures=("heatmap",),
    )
)
register(
    AnalysisSpec(
        kind="dla_layer",
        summary="direct logit attribution of each layer's attention and MLP",
        explanation=DLA_EXPLANATION,
        per_prompt=True,
        options=LensOptions,
        dims=fixed("layer", "component"),
        compute=_dla_layer,
        finish=as_is("direct logit attribution of each layer's attention and MLP output"),
        figures=("grouped_bars",),
    )
)
register(
    AnalysisSpec(
        kind="logit_lens",
        summary="logit difference decoded from the residual stream after each layer",
        explanation=(
            "Logit lens: the residual stream after each layer decoded through the final LayerNorm and unembedding; "
            "where the curve rises is where the answer becomes readable."
        ),
        per_prompt=True,
        options=LensOptions,
        dims=fixed("layer"),
        compute=_lens,
        finish=as_is("logit(answer) - logit(wrong) decoded from the residual stream after each layer", None),
        figures=("lens",),
    )
)
