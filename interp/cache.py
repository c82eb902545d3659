"""Selective activation caching, validated against the model's hook points."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from jaxtyping import Int
from torch import Tensor

from interp.hooks import validate_hook_names


def cache_activations(
    model,
    tokens: Int[Tensor, "batch pos"],
    names: Iterable[str],
    *,
    dtype: torch.dtype | None = None,
) -> dict[str, Tensor]:
    """Run one forward pass and keep only the named activations (detached, optionally downcast).

    Hooks are removed when the pass ends, also when it raises.
    """
    names = validate_hook_names(model, names)
    cache: dict[str, Tensor] = {}

    def saver(name: str):
        # keyed by the requested name: an alias (hook_resid_pre) fires as its target (hook_in)
        def save(tensor: Tensor, *, hook) -> None:
            kept = tensor.detach()
            cache[name] = kept.to(dtype) if dtype is not None else kept

        return save

    with torch.no_grad(), model.hooks(fwd_hooks=[(name, saver(name)) for name in names]):
        model(tokens.to(model.cfg.device))
    missing = [name for name in names if name not in cache]
    if missing:  # a hook point that exists but this forward never reached
        raise RuntimeError(f"These hooks did not fire during the forward pass: {missing}")
    return cache
