"""Path patching (`path_patch`): `interp.methods.path_patching.path_patch`."""

from __future__ import annotations

from typing import Annotated, Literal

from annotated_types import Len
from pydantic import Field, NonNegativeInt

from interp.runner.kinds.patching import normalised_finish
from interp.runner.options import AnalysisOptions, Direction
from interp.runner.registry import AnalysisSpec, Computed, UnitContext, register

HeadList = list[tuple[NonNegativeInt, NonNegativeInt]]


class PathPatchOptions(AnalysisOptions):
    """`path_patch`: exact path patching (Wang et al.) from senders to receivers or the logits."""

    kind: Literal["path_patch"]
    direction: Direction = Field(
        "noising",
        description="noising (the default, as in Wang et al. and the Python API): the senders take their "
        "corrupted-run outputs in the clean run; denoising: the reverse",
    )
    senders: HeadList = Field(
        default_factory=list, description="[[layer, head], ...] patched as one set (empty: every head alone)"
    )
    receivers: Annotated[HeadList, Len(min_length=1)] | Literal["logits"] = Field(
        "logits", description="[[layer, head], ...] whose inputs take the senders' paths, or 'logits'"
    )
    receiver_input: Literal["q", "k", "v"] = Field(
        "q", description="which input of the receiver heads (not read with receivers = 'logits')"
    )

    def unread(self) -> dict[str, str]:
        if self.receivers == "logits":
            return {"receiver_input": "the receivers are the logits, which have no q, k or v input"}
        return {}


def _check(options: PathPatchOptions, model) -> None:
    from interp.methods.path_patching import check_path

    check_path(options.senders or None, options.receivers, model.cfg.n_layers, model.cfg.n_heads)


def _compute(options: PathPatchOptions, model, pairs, ctx: UnitContext) -> Computed:
    from interp.methods.path_patching import path_patch

    result = path_patch(
        model,
        pairs,
        options.receivers,
        receiver_input=options.receiver_input,
        senders=options.senders or None,
        metric=ctx.metric,
        direction=options.direction,
        reduce="none",
    )
    return Computed(result.dims, result.values)


def describe_path(options: PathPatchOptions) -> str:
    """What is patched: the path to the logits, or to the receivers' named input."""
    if options.receivers == "logits":
        return "the sender's path to the logits"
    return (
        f"the sender's path to the {options.receiver_input} input of {[list(r) for r in options.receivers]}"
    )


def _finish(options: PathPatchOptions, mean, clean: float, corrupted: float):
    return normalised_finish(options, describe_path(options), mean, clean, corrupted)


def _explain() -> str:
    return (
        "Path patching: the effect of each sender head on the output only through the chosen receivers "
        "(all other heads frozen, MLPs recomputed). Noising (the default, as in Wang et al.): values near 0 "
        "mark paths the behaviour needs; 1 is no effect. Denoising: values near 1 mark senders whose path "
        "restores the behaviour; 0 is no effect."
    )


register(
    AnalysisSpec(
        kind="path_patch",
        summary="exact path patching (Wang et al.) from every head, or a sender set, to receivers or logits",
        explanation=_explain(),
        per_prompt=True,
        options=PathPatchOptions,
        dims=lambda options: () if options.senders else ("layer", "head"),
        compute=_compute,
        finish=_finish,
        figures=("heatmap",),
        check=_check,
    )
)
