"""Attribution patching (`attrib_<site>`): `interp.methods.attribution_patching.attribution_patch`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from interp.runner.kinds.patching import SITE_DIMS
from interp.runner.options import AnalysisOptions, Direction
from interp.runner.registry import AnalysisSpec, Computed, Finished, UnitContext, fixed, register


class AttributionOptions(AnalysisOptions):
    """`attrib_<site>`: the gradient estimate of activation patching at one site."""

    kind: Literal["attrib_head_out", "attrib_resid_pre"]
    direction: Direction = Field(
        "denoising",
        description="denoising: the estimate of patching clean into corrupted; noising: the reverse",
    )


def _compute(site: str):
    def compute(options: AttributionOptions, model, pairs, ctx: UnitContext) -> Computed:
        from interp.methods.attribution_patching import attribution_patch

        result = attribution_patch(model, pairs, ctx.metric, direction=options.direction, reduce="none")
        return Computed(result[site].dims, result[site].values)

    return compute


def _finish(options: AttributionOptions, mean, clean: float, corrupted: float) -> Finished:
    description = (
        "attribution-patching estimate of the patching effect as a fraction of the gap, "
        "(estimated patched - base) / (clean - corrupted); 0 = no effect"
    )
    return Finished(mean / (clean - corrupted), description, 0.0)


for _kind, _site in (("attrib_head_out", "head_out"), ("attrib_resid_pre", "resid_pre")):
    register(
        AnalysisSpec(
            kind=_kind,
            summary=f"attribution patching (gradient estimate) of {_site}",
            explanation=(
                "Attribution patching: a gradient (first-order) estimate of the patching effect of every component "
                "from a single backward pass. Fast, but approximate: confirm its top components with exact patching."
            ),
            per_prompt=True,
            options=AttributionOptions,
            dims=fixed(*SITE_DIMS[_site]),
            compute=_compute(_site),
            finish=_finish,
            figures=("heatmap",),
        )
    )
