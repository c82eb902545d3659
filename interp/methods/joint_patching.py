"""Patch several activations at once through the model's hooks, and read the metric.

Where a sweep asks "what does each activation do alone", `run_patched` asks "what do these do
together": e.g. patch a candidate circuit's heads and see how much of the clean behaviour returns.
The patches are the vocabulary's `Patch(hook, source, positions, heads)`
(`interp.methods.interventions`); one with `source=None` takes the pair's other run (the corrupted
prompts when denoising). It runs the bridge itself (`run_with_interventions(..., target="bridge")`,
an independent path from `interp.engine.batched`), which removes every hook it added when the run
ends, also when a hook or the metric raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from jaxtyping import Float
from torch import Tensor

from interp.base.errors import InputError
from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptPairs
from interp.methods.contrastive import Direction, base_and_source, contrast
from interp.methods.hooked_run import run_with_interventions
from interp.methods.interventions import Patch
from interp.model.cache import cache_activations
from interp.model.hooks import validate_hook_names
from interp.model.loading import HookedPhi


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
    if not all(isinstance(p, Patch) for p in patches):
        raise InputError("run_patched takes a list of Patch(hook, source=None, positions, heads).")
    names = validate_hook_names(model, [p.hook for p in patches if p.source is None])
    core = contrast(model, pairs, metric, direction=direction, keep="logits")
    base_tokens, source_tokens = base_and_source(pairs.clean_tokens, pairs.corrupted_tokens, direction)
    source = cache_activations(model, source_tokens.to(model.cfg.device), set(names)) if names else {}
    filled = [p if p.source is not None else replace(p, source=source[p.hook]) for p in patches]
    logits = run_with_interventions(model, base_tokens, filled, target="bridge")[:, -1]
    return core.measure(logits, core.everyone)
