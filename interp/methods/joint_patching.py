"""Patch several activations at once through the model's hooks, and read the metric.

Where a sweep asks "what does each activation do alone", `run_patched` asks "what do these do
together": e.g. patch a candidate circuit's heads and see how much of the clean behaviour returns.
It runs the bridge itself with hooks (an independent path from `interp.engine.batched`), removes
every hook it added when the run ends, also when a hook or the metric raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.base.errors import InputError
from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptPairs
from interp.methods.contrastive import Direction, base_and_source, contrast
from interp.model.cache import cache_activations
from interp.model.hooks import head_axis, pos_axis, validate_hook_names
from interp.model.loading import HookedPhi


@dataclass(frozen=True)
class Patch:
    """Replace `hook`'s activation at these positions (all if None) and heads (all if None)."""

    hook: str
    pos: Sequence[int] | None = None
    head: Sequence[int] | None = None


def _mask(hook: str, shape: torch.Size, pos: Sequence[int] | None, head: Sequence[int] | None) -> Tensor:
    """Boolean mask (broadcastable to `shape`) of the entries a patch replaces."""
    mask = torch.ones((1,) * len(shape), dtype=torch.bool)
    for axis, chosen in ((pos_axis(hook), pos), (head_axis(hook), head)):
        if chosen is None:
            continue
        if axis is None:
            raise InputError(
                f"{hook!r} has no head axis; drop `head` or use a per-head hook such as attn.hook_z"
            )
        picked = torch.zeros(shape[axis], dtype=torch.bool)
        picked[list(chosen)] = True
        view = [1] * len(shape)
        view[axis] = shape[axis]
        mask = mask & picked.view(view)
    return mask


@torch.no_grad()
def run_patched(
    model: HookedPhi,
    pairs: PromptPairs,
    patches: Sequence[Patch],
    metric: MetricKind | Metric = "logit_diff",
    *,
    direction: Direction = "denoising",
) -> Float[Tensor, " batch"]:
    """Per-prompt metric of the base run with every patch applied at once (equal-length prompts)."""
    if not pairs.same_length:
        raise InputError("run_patched needs prompts of one token length; select a length group first")
    names = validate_hook_names(model, [p.hook for p in patches])
    core = contrast(model, pairs, metric, direction=direction, keep="logits")
    base_tokens, source_tokens = base_and_source(pairs.clean_tokens, pairs.corrupted_tokens, direction)
    device = model.cfg.device
    source = cache_activations(model, source_tokens.to(device), set(names))

    def hook_for(patch: Patch):
        def hook(activation: Tensor, *, hook) -> Tensor:
            mask = _mask(patch.hook, activation.shape, patch.pos, patch.head).to(activation.device)
            return torch.where(mask, source[patch.hook].to(activation.dtype), activation)

        return hook

    with model.hooks(fwd_hooks=[(p.hook, hook_for(p)) for p in patches]):
        logits = model(base_tokens.to(device))[:, -1]
    return core.measure(logits, core.everyone)
