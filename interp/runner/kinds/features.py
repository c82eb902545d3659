"""Features on prompt pairs (`feature_attribution`): which dictionary latents carry the behaviour.

`interp.methods.features.attribution.feature_attribution` with the dictionaries of `dictionaries =
["path", ...]` (relative to the config file) spliced in: attribution patching on every latent and,
with `error = true`, every error term (Marks et al. 2024), per position. The dictionaries are checked
against the model, together as one splice (one per hook point written), before any unit runs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from interp.base.errors import InputError, InterpError
from interp.runner.kinds.dictionaries import DictionaryFiles, load_files
from interp.runner.options import Direction
from interp.runner.registry import AnalysisSpec, Computed, Finished, UnitContext, fixed, register


class FeatureAttributionOptions(DictionaryFiles):
    """`feature_attribution`: attribution patching on the latents (and error terms) of spliced dictionaries."""

    kind: Literal["feature_attribution"]
    direction: Direction = Field("denoising", description="denoising (patch clean into corrupted) or noising")
    error: bool = Field(
        True,
        description="splice with error terms (the model's outputs unchanged; error nodes attributed too)",
    )


def _check(options: FeatureAttributionOptions, model) -> None:
    from interp.dictionaries.splice import check_dictionaries

    try:
        check_dictionaries(model, load_files(options), options.error)
    except InterpError as error:
        raise InputError(f"dictionaries {options.dictionaries}: {error}") from None


def _compute(options: FeatureAttributionOptions, model, pairs, ctx: UnitContext) -> Computed:
    from interp.methods.features.attribution import feature_attribution

    result = feature_attribution(
        model,
        load_files(options),
        pairs,
        ctx.metric,
        direction=options.direction,
        error=options.error,
        reduce="none",
    )
    return Computed(("feature", "pos"), result.values, {"feature": result.labels["feature"]})


register(
    AnalysisSpec(
        kind="feature_attribution",
        summary="attribution patching on dictionary latents and error terms (sparse feature circuits)",
        explanation=(
            "Feature attribution (Marks et al. 2024): with the dictionaries spliced in, each latent's and each error "
            "term's estimated effect on the metric of patching it from the source run at one position, "
            "(source - base activation) x d metric / d activation on the base run. Exact where the metric is "
            "linear in the latents; check the top features with exact latent patching."
        ),
        per_prompt=True,
        options=FeatureAttributionOptions,
        dims=fixed("feature", "pos"),
        compute=_compute,
        finish=lambda options, mean, clean, corrupted: Finished(
            mean, "estimated metric change of patching the feature at the position, patched - unpatched", 0.0
        ),
        figures=("ranked_bars",),
        check=_check,
    )
)
