"""Steering (`steer`): a layer x multiplier sweep of steering vectors, `interp.methods.steering.steer_sweep`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, FiniteFloat, NonNegativeInt, StringConstraints, field_validator, model_validator

from interp.base.errors import InputError
from interp.runner.options import AnalysisOptions, Where
from interp.runner.registry import AnalysisSpec, Computed, Finished, UnitContext, fixed, register

Prompt = Annotated[str, StringConstraints(min_length=1)]


class SteerOptions(AnalysisOptions):
    """`steer`: add each layer's steering vector, times each multiplier, to the corrupted prompts."""

    kind: Literal["steer"]
    layers: list[NonNegativeInt] | None = Field(
        None,
        min_length=1,
        description="layers whose residual stream is steered, 0 .. n_layers (n_layers: the final residual; "
        "default: every one)",
    )
    multipliers: list[FiniteFloat] = Field(
        default_factory=lambda: [0.5, 1.0, 2.0, 4.0], min_length=1, description="multipliers of the vector"
    )
    positions: Where = Field(
        "all",
        description="where the vector is added: 'all' (prompt and generated tokens) or 'prompt' "
        "('generated' cannot change the score, read at the prompt's last position)",
    )
    n_samples: int = Field(2, ge=0, le=64, description="corrupted prompts continued as samples per cell")
    max_new_tokens: int = Field(
        12, ge=1, le=512, description="tokens generated per sample (not read with n_samples = 0)"
    )
    positive: list[Prompt] | None = Field(
        None,
        min_length=1,
        description="prompts whose mean final-token residual, minus the negative prompts', is the "
        "vector (ActAdd with one of each; default: the pairs' clean - corrupted)",
    )
    negative: list[Prompt] | None = Field(
        None, min_length=1, description="the prompts subtracted (with positive)"
    )

    @field_validator("positions")
    @classmethod
    def _positions_the_score_sees(cls, positions: str) -> str:
        if positions == "generated":
            raise ValueError(
                "positions = 'generated' is not allowed for steer: its values score the prompt's last "
                "position, which steering generated tokens only can never reach (every cell would equal the "
                "unsteered metric); use 'all' or 'prompt', or the Python API's generate() to steer only "
                "generated tokens"
            )
        return positions

    @model_validator(mode="after")
    def _positive_with_negative(self) -> SteerOptions:
        if (self.positive is None) != (self.negative is None):
            raise ValueError("steer takes both positive and negative prompts, or neither (then the pairs')")
        return self

    def unread(self) -> dict[str, str]:
        if self.n_samples == 0:
            return {"max_new_tokens": "with n_samples = 0 nothing is generated"}
        return {}


def _layers(options: SteerOptions, model) -> list[int]:
    return options.layers if options.layers is not None else list(range(model.cfg.n_layers + 1))


def _check(options: SteerOptions, model) -> None:
    n_layers = model.cfg.n_layers
    bad = [layer for layer in _layers(options, model) if layer > n_layers]
    if bad:
        raise InputError(
            f"layers = {bad} are not layers of this model; use 0 .. {n_layers} ({n_layers}: the final residual)"
        )


def _compute(options: SteerOptions, model, pairs, ctx: UnitContext) -> Computed:
    from interp.methods.steering import steer_sweep

    layers = _layers(options, model)
    result = steer_sweep(
        model, pairs, layers, options.multipliers, ctx.metric, positions=options.positions,
        n_samples=options.n_samples, max_new_tokens=options.max_new_tokens,
        positive=options.positive, negative=options.negative,
    )  # fmt: skip
    labels = {
        "layer": [f"L{layer}" for layer in layers],
        "multiplier": [f"x{m:g}" for m in options.multipliers],
    }
    extra = {"samples": result.samples, "kl": result.kl.tolist(), "unsteered": result.unsteered}
    return Computed(("layer", "multiplier"), result.scores, labels, extra)


def _vector_source(options: SteerOptions) -> str:
    if options.positive is None:
        return "clean - corrupted"
    return f"positive - negative prompts' ({len(options.positive)} / {len(options.negative or [])})"


def _finish(options: SteerOptions, mean, clean: float, corrupted: float) -> Finished:
    return Finished(
        mean,
        f"mean metric of the corrupted prompts with the layer's {_vector_source(options)} vector added "
        f"(positions: {options.positions}); unsteered {corrupted:.4f}, clean {clean:.4f}",
        corrupted,
    )


register(
    AnalysisSpec(
        kind="steer",
        summary="steering vectors from the pairs (clean - corrupted), a layer x multiplier sweep with samples",
        explanation=(
            "Steering: at each layer, the mean over pairs of the clean minus corrupted residual stream at the "
            "final token (or, with `positive` and `negative`, the mean over those prompts) is added, times each "
            "multiplier, to the corrupted prompts. A value near the clean "
            "metric means the vector moves the model to the clean behaviour; the samples show the text it "
            "then writes (greedy), beside the unsteered text."
        ),
        per_prompt=False,
        options=SteerOptions,
        dims=fixed("layer", "multiplier"),
        compute=_compute,
        finish=_finish,
        figures=("steer_heatmap",),
        check=_check,
    )
)
