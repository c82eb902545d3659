"""The one result type of per-component effects, and the one way of ranking components by effect.

Every method that scores components on prompt pairs (activation, path and attribution patching,
ablation sweeps) returns an `EffectResult`. Its `values` are either

- `measures="metric"`: the metric of the intervened run (patching: the patched metric), or
- `measures="change"`: the change of the metric the intervention causes (ablation: ablated - clean;
  attribution patching: the estimated patched - base).

`effect()` puts both on one scale: the signed change from the unintervened base run, as a fraction
of the clean - corrupted gap. It is 0 for a component that does nothing, whatever the direction: a
denoising patch that restores the clean value has effect +1; a noising patch (or an ablation) that
removes the whole behaviour has effect -1. `top(k)` ranks by |effect|, and so do the notebook table
(`_repr_html_`) and the HTML report (which ranks by distance from `no_effect`, the same order).

`importance()` is the one sign convention for "how much does this component matter": the change it
causes, in the metric's units, signed so that positive means it carries the clean behaviour (a
denoising patch that restores it, a noising patch or ablation that removes it), whichever the
direction and whichever way the metric points. Circuit selection (`select`), the edge tables and
(through `importance`, the function, on stored values) the report's circuit graph all rank by it.
Edge scores are this type too (`EdgeScores`: dims `("edge",)`, the edge names as labels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp.base.errors import InputError
from interp.base.html import html_table
from interp.data.metrics import normalise

GAP_EPSILON = 1e-12


def top_coords(
    values: Float[Tensor, "*dims"], k: int, *, centre: float = 0.0
) -> list[tuple[tuple[int, ...], float]]:
    """The k entries farthest from `centre` (the value that means "no effect"), as (coords, value)."""
    flat = values.flatten()
    if values.ndim == 0:
        return [((), flat[0].item())]
    order = (flat - centre).abs().argsort(descending=True, stable=True)[:k]
    coords = torch.stack(torch.unravel_index(order, values.shape), dim=-1)
    return [(tuple(c.tolist()), flat[i].item()) for c, i in zip(coords, order, strict=True)]


def importance(
    change: Float[Tensor, "*dims"], clean: float, corrupted: float, direction: str
) -> Float[Tensor, "*dims"]:
    """The change each component causes, signed so that positive means it carries the clean behaviour.

    `change` is the metric change the intervention causes (intervened - base run). Denoising: a change
    towards the clean metric is positive; noising (ablation too): a change towards the corrupted metric
    is. Which way "towards the clean metric" is comes from the sign of clean - corrupted, taken as
    positive when the gap is 0 or unknown (NaN: scores read from a file that does not record it).
    """
    if direction not in ("denoising", "noising"):
        raise InputError(f"direction={direction!r} is not allowed; use 'denoising' or 'noising'.")
    gap = clean - corrupted
    towards_clean = -1.0 if gap < 0 else 1.0  # False for NaN
    return change * (towards_clean if direction == "denoising" else -towards_clean)


def component_name(
    dims: tuple[str, ...] | list[str], coords: tuple[int, ...], labels: dict | None = None
) -> str:
    """`L3H2`, `L1 pos 4`, `L0H1 pos 3`, or the dimension's own labels (`L2 attn`)."""
    labels = labels or {}
    parts = []
    for dim, c in zip(dims, coords, strict=True):
        if dim in labels:
            parts.append(("" if not parts else " ") + str(labels[dim][c]))
        else:
            parts.append({"layer": "L", "head": "H", "pos": " pos "}.get(dim, f" {dim} ") + str(c))
    return "".join(parts)


@dataclass
class EffectResult:
    """Per-component values over `dims` (mean over prompts, or `*dims batch` with `per_prompt`)."""

    site: str
    dims: tuple[str, ...]
    values: Float[Tensor, "*dims"]  # `*dims batch` with `per_prompt`
    clean: float
    corrupted: float
    metric: str
    direction: str
    measures: Literal["metric", "change"] = "metric"
    per_prompt: bool = False
    extra: dict = field(default_factory=dict)
    labels: dict[str, list[str]] = field(default_factory=dict)  # names along a dimension (edge names)

    @property
    def base(self) -> float:
        """The metric of the run that was intervened on (corrupted when denoising, else clean)."""
        return self.corrupted if self.direction == "denoising" else self.clean

    def mean_values(self) -> Float[Tensor, "*dims"]:
        """`values` averaged over prompts when they are per prompt."""
        return self.values.mean(-1) if self.per_prompt else self.values

    def normalised(self) -> Float[Tensor, "*dims"]:
        """Metric values: (value - corrupted) / (clean - corrupted), 1 = clean, 0 = corrupted.

        Change values: change / (clean - corrupted), the fraction of the gap the change moves.
        """
        if self.measures == "change":
            return self.values / self._gap()
        return normalise(self.values, self.clean, self.corrupted)

    def effect(self) -> Float[Tensor, "*dims"]:
        """Signed change from the base run as a fraction of the clean - corrupted gap (0 = no effect)."""
        return self.change() / self._gap()

    def change(self) -> Float[Tensor, "*dims"]:
        """The metric change each component causes: value - base for metric values, else the value."""
        return self.values - self.base if self.measures == "metric" else self.values

    def importance(self) -> Float[Tensor, "*dims"]:
        """How much each component matters (mean over prompts), signed: positive carries the clean
        behaviour, in the metric's units (`importance`, the function; the module docstring)."""
        change = self.change()
        return importance(
            change.mean(-1) if self.per_prompt else change, self.clean, self.corrupted, self.direction
        )

    def _gap(self) -> float:
        gap = self.clean - self.corrupted
        if abs(gap) < GAP_EPSILON:
            raise InputError(
                "clean and corrupted metrics are equal, so effects cannot be normalised: the corrupted "
                "prompts do not change the behaviour being measured."
            )
        return gap

    def top(self, k: int = 10) -> list[tuple[str, float, float]]:
        """The k components with the largest |effect|: (name, mean value, mean effect)."""
        values = self.mean_values()
        try:
            effects = self.effect()
        except ValueError:  # no gap: rank by the raw change from the base run
            effects = self.change()
        effects = effects.mean(-1) if self.per_prompt else effects
        return [
            (
                component_name(self.dims, coords, self.labels),
                values[coords].item() if coords else values.item(),
                e,
            )
            for coords, e in top_coords(effects, k)
        ]

    def _repr_html_(self) -> str:
        import html

        values = self.mean_values()
        what = "patched metric" if self.measures == "metric" else "metric change"
        head = (
            f"<b>{html.escape(self.site)}</b> ({html.escape(self.direction)}, {html.escape(self.metric)}); "
            f"dims {html.escape(' x '.join(self.dims) or 'scalar')} {tuple(values.shape)}; "
            f"clean {self.clean:.4f}, corrupted {self.corrupted:.4f}"
        )
        rows = [[name, f"{value:+.4f}", f"{effect:+.3f}"] for name, value, effect in self.top(8)]
        note = (
            "Ranked by |effect|: the change from the unpatched run as a fraction of clean - corrupted "
            "(0 = no effect, +1 = the whole gap restored, -1 = the whole gap removed)."
        )
        table = html_table(["component", what, "effect"], rows)
        return f"<div>{head}<br><small>{html.escape(note)}</small>{table}</div>"


PatchResult = EffectResult  # the name the public API has always used
