"""Feature attribution checked against exact patching, latent by latent.

`feature_attribution` estimates, to first order, what patching each latent from the source run would do
to the metric. `check_feature_attribution(model, sae, pairs)` measures how good that estimate is on
the pairs: for every latent whose activation differs between the base and the source run somewhere
(the others have no effect, estimated or exact), it sets

    estimate[i] = attribution of latent i summed over positions, averaged over prompts
    exact[i]    = patch_latents(latent i at every position) - base metric, averaged over prompts

and returns both, with the error term's estimate (what the latents leave unexplained) and the exact
effect of patching every latent at once. `pearson()`, `slope()` (the least-squares factor from
estimate to exact: 1 when the magnitudes agree) and `overlap(k)` (how many of the top k by |estimate|
are in the top k by |exact effect|) say whether the ranking and the scale can be trusted. Attribution
is a linearisation around the base run: where the metric saturates there (a base run that is
confidently wrong), the gradient is small and the estimates come out too small, though they can still
rank the latents right; the numbers say which.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptPairs
from interp.dictionaries.base import Dictionary
from interp.methods.contrastive import Direction, base_and_source
from interp.methods.features.attribution import feature_attribution
from interp.methods.features.interventions import LatentPatch
from interp.methods.features.patching import patch_latents, spliced_for
from interp.model.loading import HookedPhi


@dataclass(frozen=True)
class AttributionCheck:
    """Per changed latent: attribution's estimate and the exact effect of patching it (metric units)."""

    latents: Int[Tensor, " feature"]
    estimate: Float[Tensor, " feature"]
    exact: Float[Tensor, " feature"]
    error_estimate: float | None  # the error term's attribution (None without the error term)
    all_latents_exact: float  # patching every latent at every position at once
    base_metric: float

    def pearson(self) -> float:
        """Pearson correlation of estimate and exact effect over the changed latents."""
        if len(self.latents) < 2:
            raise InputError("a correlation needs at least two changed latents.")
        return float(torch.corrcoef(torch.stack([self.estimate, self.exact]))[0, 1])

    def slope(self) -> float:
        """The least-squares `s` in exact ~ s * estimate (through 0): 1 when the magnitudes agree."""
        return float((self.estimate * self.exact).sum() / (self.estimate**2).sum())

    def top(self, k: int, by: Literal["estimate", "exact"] = "estimate") -> list[int]:
        """The k latents with the largest |estimate| (or |exact effect|), largest first."""
        if by not in ("estimate", "exact"):
            raise InputError(f"by={by!r} is not allowed; use 'estimate' or 'exact'.")
        values = self.estimate if by == "estimate" else self.exact
        order = values.abs().argsort(descending=True, stable=True)[:k]
        return self.latents[order].tolist()

    def overlap(self, k: int) -> int:
        """How many of the top k latents by |estimate| are among the top k by |exact effect|."""
        return len(set(self.top(k, "estimate")) & set(self.top(k, "exact")))


def changed_latents(
    model: HookedPhi, pairs: PromptPairs, dictionary: Dictionary, name: str, direction: Direction
) -> Int[Tensor, " feature"]:
    """Latents whose activation (at hook point `name` of the live splice) differs between the base and
    the source run at some prompt and position."""
    base_tokens, source_tokens = base_and_source(pairs.clean_tokens, pairs.corrupted_tokens, direction)
    device = model.cfg.device
    with torch.no_grad():
        base = model.run_with_cache(base_tokens.to(device), names_filter=name)[1][name]
        source = model.run_with_cache(source_tokens.to(device), names_filter=name)[1][name]
    return torch.nonzero((source - base).abs().amax(dim=(0, 1)) > 0).flatten().cpu()


def check_feature_attribution(
    model: HookedPhi,
    dictionary: Dictionary,
    pairs: PromptPairs,
    metric: MetricKind | Metric = "logit_diff",
    *,
    direction: Direction = "denoising",
    error: bool | None = None,
) -> AttributionCheck:
    """Attribution's estimate and the exact effect of every latent of `dictionary` that the pairs move
    (one `patch_latents` run per latent); see the module docstring."""
    if not isinstance(dictionary, Dictionary):
        raise InputError(f"check_feature_attribution takes one Dictionary, not {type(dictionary).__name__}.")
    with ExitStack() as stack:
        spliced = spliced_for(stack, model, [dictionary], error)
        latents = changed_latents(model, pairs, dictionary, spliced.name(dictionary), direction)
        if len(latents) == 0:
            raise InputError(f"no latent of {dictionary!r} differs between the clean and corrupted prompts.")
        result = feature_attribution(model, dictionary, pairs, metric, direction=direction, reduce="none")
        per_latent = result.values.sum(1).mean(-1)  # [feature axis, pos, batch] -> feature axis
        base = patch_latents(model, pairs, [LatentPatch(dictionary, [0], [])], metric, direction=direction)
        every = patch_latents(model, pairs, [LatentPatch(dictionary)], metric, direction=direction)
        exact = torch.stack(
            [
                (
                    patch_latents(model, pairs, [LatentPatch(dictionary, [i])], metric, direction=direction)
                    - base
                ).mean()
                for i in latents.tolist()
            ]
        )
        return AttributionCheck(
            latents=latents,
            estimate=per_latent[latents].float(),
            exact=exact.float().cpu(),
            error_estimate=float(per_latent[dictionary.d_sae]) if spliced.error else None,
            all_latents_exact=float((every - base).mean()),
            base_metric=float(base.mean()),
        )
