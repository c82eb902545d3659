"""Activation patching, one kind per site (`patch_<site>`): `interp.methods.activation_patching.sweep`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from interp.runner.options import AnalysisOptions, Direction
from interp.runner.registry import AnalysisSpec, Computed, Finished, UnitContext, fixed, register

# interp.methods.activation_patching.SITE_DIMS (a test holds them equal)
SITE_DIMS: dict[str, tuple[str, ...]] = {
    "resid_pre": ("layer", "pos"),
    "attn_out": ("layer", "pos"),
    "mlp_out": ("layer", "pos"),
    "head_out": ("layer", "head"),
    "head_out_by_pos": ("layer", "head", "pos"),
    "head_q": ("layer", "head"),
    "head_k": ("layer", "head"),
    "head_v": ("layer", "head"),
    "head_pattern": ("layer", "head"),
}

PATCH_EXPLANATION = (
    "Activation patching: each cell replaces one activation of the corrupted run with its value from the "
    "clean run (denoising) or the reverse (noising) and reports the patched metric, normalised so that 1 is "
    "the clean value and 0 the corrupted one. Denoising: cells near 1 carry enough to restore the behaviour; "
    "0 is no effect. Noising: cells near 0 are needed for the behaviour; 1 is no effect."
)


class PatchOptions(AnalysisOptions):
    """`patch_<site>`: exact activation patching of every component of one site."""

    kind: Literal[
        "patch_resid_pre",
        "patch_attn_out",
        "patch_mlp_out",
        "patch_head_out",
        "patch_head_out_by_pos",
        "patch_head_q",
        "patch_head_k",
        "patch_head_v",
        "patch_head_pattern",
    ]
    direction: Direction = Field(
        "denoising",
        description="denoising: clean activations patched into the corrupted run; noising: the reverse",
    )


def normalised_finish(options, what: str, mean, clean: float, corrupted: float) -> Finished:
    """(patched - corrupted) / (clean - corrupted), described for `what` and the options' direction."""
    from interp.data.metrics import normalise

    into = "the corrupted run" if options.direction == "denoising" else "the clean run"
    no_effect = 0.0 if options.direction == "denoising" else 1.0
    description = (
        f"normalised patched metric, (patched - corrupted) / (clean - corrupted), {what} patched into "
        f"{into}: 1 = the clean metric, 0 = the corrupted one; {no_effect:g} = no effect"
    )
    return Finished(normalise(mean, clean, corrupted), description, no_effect)


def _sweep_compute(site: str):
    def compute(options: PatchOptions, model, pairs, ctx: UnitContext) -> Computed:
        from interp.methods.activation_patching import sweep

        result = sweep(
            model,
            pairs,
            site,
            ctx.metric,
            direction=options.direction,
            reduce="none",
            memory_budget=ctx.memory_budget,
        )
        return Computed(result.dims, result.values)

    return compute


def _sweep_finish(site: str):
    return lambda options, mean, clean, corrupted: normalised_finish(
        options, f"each {site}", mean, clean, corrupted
    )


for _site, _dims in SITE_DIMS.items():
    register(
        AnalysisSpec(
            kind=f"patch_{_site}",
            summary=f"exact activation patching of {_site} over ({', '.join(_dims)})",
            explanation=PATCH_EXPLANATION,
            per_prompt=True,
            options=PatchOptions,
            dims=fixed(*_dims),
            compute=_sweep_compute(_site),
            finish=_sweep_finish(_site),
            figures=("heatmap",),
        )
    )
