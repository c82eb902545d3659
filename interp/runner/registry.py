"""The analysis registry's mechanism: what a kind is, and the one table of kinds.

A kind (`AnalysisSpec`) says everything the runner, the config validator, `interp tasks` and the
report need:

- `options`: its own pydantic model of the `[[analysis]]` fields it reads (a field's description is
  the help `interp tasks` prints; a field it does not read is a config error naming the kind);
- `check(options, model)`: what only the loaded model can tell (heads and layers in range), checked
  for every analysis before any unit is computed;
- `compute(options, model, pairs, ctx)`: per-prompt values (last axis = the batch's prompts) for
  per-prompt kinds, so batches are computed, saved and resumed independently and averaged at the end;
- `finish(options, mean_values, clean, corrupted)`: what results.json reports, what one value means,
  and the value that means "no effect" (the report ranks by distance from it);
- `dims(options)`: the axes of the values (checked against what `compute` returns);
- `explanation` for the report, `summary` for `interp tasks`, `figures` by name (drawn by the report).

The kinds themselves live in `interp.runner.kinds`, one module per family; adding a kind = an options
model, a compute and one `register(AnalysisSpec(...))` there. This module imports neither torch nor
a method, so configs validate and `interp tasks` prints without loading them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

    from interp.data.metrics import MetricKind
    from interp.data.prompts import PromptPairs
    from interp.model.loading import HookedPhi
    from interp.runner.options import AnalysisOptions


@dataclass(frozen=True)
class UnitContext:
    """What a unit needs from the config beyond its own options."""

    metric: MetricKind
    seed: int
    memory_budget: int  # bytes of activations per patching chunk


@dataclass
class Computed:
    """A unit's values and their dims (and labels for named dims)."""

    dims: tuple[str, ...]
    values: Tensor  # [...dims, batch] for per-prompt kinds, [...dims] otherwise
    labels: dict[str, list[str]] | None = None
    extra: dict | None = None  # JSON-able fields for results.json (e.g. generated samples); not per prompt


@dataclass(frozen=True)
class Finished:
    """What results.json reports for an analysis: values, what one means, and the no-effect value."""

    values: Tensor
    description: str
    no_effect: float | None  # the value that means "no effect"; None: values are not ranked
    extra: dict | None = None  # further fields of the analysis's entry in results.json


def _nothing_to_check(options: Any, model: Any) -> None:
    return None


@dataclass(frozen=True)
class AnalysisSpec:
    """Everything about one analysis kind (see the module docstring)."""

    kind: str
    summary: str
    explanation: str
    per_prompt: bool
    options: type[AnalysisOptions]
    dims: Callable[[Any], tuple[str, ...]]
    compute: Callable[[Any, HookedPhi, PromptPairs, UnitContext], Computed]
    finish: Callable[[Any, Tensor, float, float], Finished]
    figures: tuple[str, ...]
    check: Callable[[Any, HookedPhi], None] = _nothing_to_check  # raises InputError naming the option


REGISTRY: dict[str, AnalysisSpec] = {}


def register(spec: AnalysisSpec) -> AnalysisSpec:
    """Add an analysis kind to the registry (each kind once; its options model must allow its kind)."""
    if spec.kind in REGISTRY:
        raise ValueError(f"analysis kind {spec.kind!r} is registered twice")
    if spec.kind not in spec.options.kinds():
        raise ValueError(f"{spec.options.__name__} does not accept kind {spec.kind!r}")
    REGISTRY[spec.kind] = spec
    return spec


def spec_for(kind: str) -> AnalysisSpec:
    """The registry entry of `kind` (`interp.runner.kinds`, which the config imports, registers them)."""
    return REGISTRY[kind]


def fixed(*dims: str) -> Callable[[Any], tuple[str, ...]]:
    """`dims` for a kind whose axes do not depend on its options."""
    return lambda options: dims
