"""Feature steering and latent selections: what a dictionary's latents let one do to the model.

`FeatureSteer(dictionary, latent, value, mode)`:

- `mode="add"`: add `value * W_dec[latent]` (the latent's decoder direction) to the activation the
  dictionary writes (`hook_name_out`; `hook_name` for an SAE). It needs no splice; in a spliced model it
  equals adding `value` to the latent's activation (`hook_acts[..., latent] += value`), the decoder
  being linear.
- `mode="clamp"`: set the latent's activation to `value`, i.e. `hook_acts[..., latent] = value` in the
  spliced model (`interp.dictionaries.splice`): with `error=True` the activation changes by
  `(value - a) * W_dec[latent]` where the latent was at `a`, with `error=False` the model runs on the
  reconstruction from the clamped latents. It needs the dictionary spliced in.

`to_hook(model)` gives the intervention for `generate` (a `Hook` at the right point, acting at
`positions`: "all", "prompt", "generated" or absolute positions); `fwd_hook(model)` a TransformerLens
`(name, fn)` pair for `run_with_hooks` (at every position, or the listed ones).

`LatentPatch(dictionary, latents, positions)`: which latents of which dictionary, at which positions,
`patch_latents` replaces with the source run's (None: all).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.base.errors import InputError
from interp.dictionaries.base import Dictionary
from interp.dictionaries.splice import current_entry
from interp.engine.edits import Site
from interp.methods.interventions import Hook, Positions
from interp.model.loading import HookedPhi

SteerMode = Literal["add", "clamp"]
STEER_MODES: tuple[SteerMode, ...] = ("add", "clamp")


def check_latents(dictionary: Dictionary, latents: Sequence[int], what: str) -> list[int]:
    """`latents` as a list of ints in [0, d_sae), or an error naming the bad ones and the range."""
    if isinstance(latents, str | bytes) or not isinstance(latents, Sequence | range) or len(latents) == 0:
        raise InputError(f"{what} must be a non-empty list of latent indices, not {latents!r}.")
    bad = [
        i
        for i in latents
        if isinstance(i, bool) or not isinstance(i, Integral) or not 0 <= i < dictionary.d_sae
    ]
    if bad:
        raise InputError(f"{what} {bad} out of range: {dictionary!r} has latents 0..{dictionary.d_sae - 1}.")
    return [int(i) for i in latents]


@dataclass(frozen=True)
class FeatureSteer:
    """Add `value` times latent `latent`'s decoder direction to what `dictionary` writes (`add`), or
    set that latent's activation to `value` in the spliced model (`clamp`); see the module docstring."""

    dictionary: Dictionary
    latent: int
    value: float
    mode: SteerMode = "add"
    positions: Positions = "all"

    def __post_init__(self) -> None:
        if not isinstance(self.dictionary, Dictionary):
            raise InputError(f"FeatureSteer takes a Dictionary, not {type(self.dictionary).__name__}.")
        check_latents(self.dictionary, [self.latent], "latent")
        if isinstance(self.value, bool) or not isinstance(self.value, Real) or not math.isfinite(self.value):
            raise InputError(f"value={self.value!r} is not allowed; it must be a finite number.")
        if self.mode not in STEER_MODES:
            raise InputError(f"mode={self.mode!r} is not allowed; use one of {', '.join(STEER_MODES)}.")
        if self.dictionary.hook_name_out is None:
            raise InputError(f"{self.dictionary!r} has no hook names: say which hook it writes.")

    def hook_name(self) -> str:
        """Where it acts: the hook the dictionary writes (`add`) or its latents' hook point (`clamp`)."""
        if self.mode == "add":
            return self.dictionary.hook_name_out
        entry = current_entry(self.dictionary)
        if entry is None:
            raise InputError(
                f"FeatureSteer(mode='clamp') sets a latent of the spliced model: splice {self.dictionary!r} in "
                "first (`with interp.splice(model, [dictionary]):`), or use mode='add'."
            )
        return entry.name("hook_acts")

    def apply(
        self, activation: Float[Tensor, "batch pos _"]
    ) -> Float[Tensor, "batch pos _"]:  # _: d_out (add) or d_sae (clamp)
        """The activation at `hook_name()` steered (a new tensor, at every position)."""
        if self.mode == "clamp":
            out = activation.clone()
            out[..., self.latent] = self.value
            return out
        direction = self.dictionary.W_dec[self.latent].detach()
        return activation + (self.value * direction).to(activation.device, activation.dtype)

    def to_hook(self, model: HookedPhi | None = None) -> Hook:
        """The intervention for `generate` (a `Hook` at `hook_name()`, at `positions`)."""
        return Hook(self.hook_name(), lambda activation, site: self.apply(activation), self.positions)

    def fwd_hook(self, model: HookedPhi | None = None) -> tuple[str, Callable]:
        """A TransformerLens `(name, fn)` for `run_with_hooks` / `model.hooks`: every position, or the
        listed absolute ones."""
        positions = self.positions
        if isinstance(positions, str) and positions != "all":
            raise InputError(
                f"positions={positions!r} is for generate; on the bridge use 'all' or a list of positions."
            )

        def hook(activation: Float[Tensor, "batch pos _"], hook) -> Float[Tensor, "batch pos _"]:
            steered = self.apply(activation)
            if positions == "all":
                return steered
            index = torch.tensor([p for p in positions if p < activation.shape[1]], device=activation.device)
            return activation.index_copy(1, index, steered.index_select(1, index))

        return self.hook_name(), hook

    def edit(self) -> tuple[str, Callable[[Tensor, Site], Tensor]]:
        """An engine edit `(name, fn(tensor, site))` at every position (e.g. for `interp.engine.forward`)."""
        return self.hook_name(), lambda tensor, site: self.apply(tensor)


@dataclass(frozen=True)
class LatentPatch:
    """Latents `latents` (None: all) of `dictionary` at positions `positions` (None: all), to patch."""

    dictionary: Dictionary
    latents: Sequence[int] | None = None
    positions: Sequence[int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.dictionary, Dictionary):
            raise InputError(f"LatentPatch takes a Dictionary, not {type(self.dictionary).__name__}.")
        if self.latents is not None:
            check_latents(self.dictionary, self.latents, "latents")

    def mask(self, n_pos: int, device=None) -> Bool[Tensor, "1 pos d_sae"]:
        """Bool [1, pos, d_sae]: the entries of `hook_acts` this patch replaces."""
        latents = torch.zeros(self.dictionary.d_sae, dtype=torch.bool, device=device)
        latents[slice(None) if self.latents is None else list(self.latents)] = True
        positions = torch.zeros(n_pos, dtype=torch.bool, device=device)
        if self.positions is None:
            positions[:] = True
        else:
            bad = [
                p
                for p in self.positions
                if isinstance(p, bool) or not isinstance(p, Integral) or not 0 <= p < n_pos
            ]
            if bad:
                raise InputError(f"positions {bad} out of range: the prompts have positions 0..{n_pos - 1}.")
            positions[list(self.positions)] = True
        return (positions[:, None] & latents[None, :])[None]
