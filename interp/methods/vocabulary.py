"""One spelling for ablation methods, shared by `ablate`, `ablation_sweep` and circuit evaluation.

`AblationMethod` names what an ablated activation is replaced with:

- `zero`: 0.
- `mean`: its mean over a reference dataset (all prompts and positions).
- `resample`: its value on another prompt of a reference dataset (Chan et al. 2022).
- `counterfactual`: its value on the paired corrupted prompt (each clean prompt takes the value from
  its own pair's corrupted run). For `ablation_sweep` this is `resample` with `reference="corrupted"`;
  circuit evaluation's `mode="counterfactual"` means the same.

A method that cannot give one of these refuses it by name with `check_method`, listing what it allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from interp.base.errors import InputError

AblationMethod = Literal["zero", "mean", "resample", "counterfactual"]
ABLATION_METHODS: tuple[str, ...] = get_args(AblationMethod)


def check_method(method: object, allowed: Sequence[str], option: str = "method") -> str:
    """Return `method` if it is one of `allowed` (a subset of `ABLATION_METHODS`), else an `InputError`."""
    if method not in allowed:
        names = ", ".join(repr(a) for a in allowed)
        known = "" if method not in ABLATION_METHODS else " here (it is an ablation method elsewhere)"
        raise InputError(f"{option}={method!r} is not allowed{known}; use one of {names}.")
    return method  # type: ignore[return-value]
