"""Exact patching of chosen latents: the validation that feature attribution's estimates answer to.

`patch_latents(model, pairs, [LatentPatch(sae, latents=[12, 40], positions=[5])])` runs the base prompts
(corrupted when denoising, clean when noising; `interp.methods.contrastive`) in the spliced model with
those latents' activations at those positions taken from the source run, every patch at once, and
returns the per-prompt metric. The model is spliced with the patches' dictionaries for the call (with
the error term unless `error=False`), or used as it is when it is already spliced (then every patched
dictionary must be in that splice). With the error term, the activation a dictionary writes changes by
exactly the patched latents' change times their decoder rows; the rest of the model runs as it does.
It runs the bridge with hooks on `<hook>.dict.hook_acts`, removed when the run ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack

import torch
from jaxtyping import Float
from torch import Tensor

from interp.base.errors import InputError
from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptPairs
from interp.dictionaries.splice import Spliced, current, splice
from interp.methods.contrastive import Direction, base_and_source, contrast
from interp.methods.features.interventions import LatentPatch
from interp.model.loading import HookedPhi


def spliced_for(stack: ExitStack, model: HookedPhi, dictionaries: list, error: bool | None) -> Spliced:
    """The model's live splice (checked to hold `dictionaries`, and `error` if given), or a new one
    with `dictionaries` entered on `stack` (with the error term unless `error=False`)."""
    live = current(model)
    if live is None:
        return stack.enter_context(splice(model, dictionaries, error=True if error is None else error))
    if error is not None and error != live.error:
        raise InputError(
            f"error={error} but the model is spliced with error={live.error}; drop error= or re-splice."
        )
    held = {id(e.dictionary) for e in live.entries}
    missing = [d for d in dictionaries if id(d) not in held]
    if missing:
        raise InputError(
            f"{missing[0]!r} is not in the model's splice ({live!r}); splice it in with the others."
        )
    return live


@torch.no_grad()
def patch_latents(
    model: HookedPhi,
    pairs: PromptPairs,
    patches: Sequence[LatentPatch],
    metric: MetricKind | Metric = "logit_diff",
    *,
    direction: Direction = "denoising",
    error: bool | None = None,
) -> Float[Tensor, " batch"]:
    """Per-prompt metric of the base run with the chosen latents patched from the source run."""
    if not pairs.same_length:
        raise InputError("patch_latents needs prompts of one token length; select a length group first.")
    if (
        isinstance(patches, LatentPatch)
        or not patches
        or not all(isinstance(p, LatentPatch) for p in patches)
    ):
        raise InputError("patches must be a non-empty list of LatentPatch objects.")
    dictionaries = list({id(p.dictionary): p.dictionary for p in patches}.values())
    with ExitStack() as stack:
        spliced = spliced_for(stack, model, dictionaries, error)
        core = contrast(model, pairs, metric, direction=direction, keep="logits")
        base_tokens, source_tokens = base_and_source(pairs.clean_tokens, pairs.corrupted_tokens, direction)
        device = model.cfg.device
        names = sorted({spliced.name(p.dictionary) for p in patches})
        _, source = model.run_with_cache(source_tokens.to(device), names_filter=names)
        n_pos = base_tokens.shape[1]
        masks: dict[str, Tensor] = {}
        for p in patches:
            name = spliced.name(p.dictionary)
            mask = p.mask(n_pos, device)
            masks[name] = mask if name not in masks else masks[name] | mask

        def hook(acts: Float[Tensor, "batch pos d_sae"], hook) -> Float[Tensor, "batch pos d_sae"]:
            return torch.where(masks[hook.name], source[hook.name].to(acts.dtype), acts)

        with model.hooks(fwd_hooks=[(name, hook) for name in masks]):
            logits = model(base_tokens.to(device))[:, -1]
        return core.measure(logits, core.everyone)
