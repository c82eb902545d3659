"""One spelling for ablation methods, shared by `ablate`, `ablation_sweep` and circuit evaluation.

`AblationMethod` names what an ablated activation is replaced with:

- `zero`: 0.
- `mean`: its mean over a reference dataset (all prompts and positions).
- `resample`: its value on another prompt of a reference dataset (Chan et al. 2022).
- `counterfactual`: its value on the paired corrupted prompt (each clean prompt takes the value from
  its own pair's corrupted run). For `ablation_sweep` this is `resample` with `reference="corrupted"`;
  circuit evaluation's `mode="counterfactual"` means the same.

`mean` needs reference prompts. `ablate`, `ablation_sweep` and the vocabulary's `Ablate` take them as
tokens; circuit evaluation takes one side of its pairs (`MeanOver`): `evaluate_circuit`,
`faithfulness_curve` and node ablation average the corrupted prompts by default, feature circuits'
`feature_faithfulness` / `circuit_metric` the clean ones (their published defaults), and each takes
`mean_over=` to choose. The values themselves come from `interp.methods.interventions.reference_mean`
and `ablation_values`, the code `Ablate` runs.

A method that cannot give one of these refuses it by name with `check_method`, listing what it allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from interp.base.errors import InputError

AblationMethod = Literal["zero", "mean", "resample", "counterfactual"]
ABLATION_METHODS: tuple[str, ...] = get_args(AblationMethod)

# the subsets each family gives, spelled once here so that the runner's option models (which import
# no method) declare exactly what the methods accept
HeadAblationMethod = Literal["zero", "mean", "resample", "counterfactual"]  # ablation_sweep
ComponentAblationMethod = Literal["zero", "mean", "resample"]  # ablate(): no pairs to draw from
CircuitAblationMethod = Literal["counterfactual", "mean", "zero"]  # circuit evaluation's `mode`
MeanOver = Literal["clean", "corrupted"]  # which side of the pairs a circuit's `mean` averages
MEAN_OVER: tuple[str, ...] = get_args(MeanOver)


def check_method(method: object, allowed: Sequence[str], option: str = "method") -> str:
    """Return `method` if it is one of `allowed` (a subset of `ABLATION_METHODS`), else an `InputError`."""
    if method not in allowed:
        names = ", ".join(repr(a) for a in allowed)
        known = "" if method not in ABLATION_METHODS else " here (it is an ablation method elsewhere)"
        raise InputError(f"{option}={method!r} is not allowed{known}; use one of {names}.")
    return method  # type: ignore[return-value]


def check_mean_over(mean_over: object, method: str, default: MeanOver, option: str = "mode") -> MeanOver:
    """The prompts a `mean` ablation averages: `mean_over` if given (only with method 'mean', which is
    the one it changes; `option` names the method's argument), else `default`."""
    if mean_over is None:
        return default
    if method != "mean":
        raise InputError(
            f"mean_over={mean_over!r} is read only with {option}='mean' ({option}={method!r} averages "
            f"nothing); leave it out or use {option}='mean'."
        )
    if mean_over not in MEAN_OVER:
        raise InputError(f"mean_over={mean_over!r} is not allowed; use 'clean' or 'corrupted'.")
    return mean_over  # type: ignore[return-value]
