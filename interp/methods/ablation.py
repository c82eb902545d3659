"""Ablations: remove a component's contribution and see what breaks.

`ablate(model, components, method)` is a context manager: inside the block the model runs with the
components' outputs replaced; the hooks are removed when the block ends, also when it raises.
Blocks nest, so ablations compose. Methods:

- `zero`: the output becomes 0 (for a head: its `hook_z`, so its write `z @ W_O` is 0 while the
  layer's output bias stays; for a whole attention layer or MLP: the whole output, bias included).
- `mean`: the output's mean over a reference dataset (all prompts and positions): removes what
  varies while keeping the average signal, so the model is less off-distribution than with zeros.
- `resample`: each prompt gets the output from another prompt of a reference dataset at the same
  positions (Chan et al. 2022's resampling ablation).
- `counterfactual` (`ablation_sweep` only): each prompt gets the output from its own pair's corrupted
  prompt, i.e. `resample` with `reference="corrupted"`; the spelling circuit evaluation uses.

The methods are `interp.methods.vocabulary.AblationMethod`, one spelling for every method.

`ablation_sweep` ablates every head, one at a time, with many heads per forward pass (the
patching engine: an ablated head is a head whose `z` is patched from a constant or another run).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Literal, get_args

import torch
from jaxtyping import Int
from torch import Tensor

from interp.base.errors import InputError
from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptPairs
from interp.engine.batched import run_variants
from interp.engine.forward import RunCache
from interp.methods.activation_patching import DEFAULT_MEMORY_BUDGET, head_out_variants
from interp.methods.contrastive import contrast
from interp.methods.interventions import Component, permutation
from interp.methods.result import EffectResult
from interp.methods.vocabulary import (
    AblationMethod,
    ComponentAblationMethod,
    HeadAblationMethod,
    check_method,
)
from interp.model.cache import cache_activations
from interp.model.loading import HookedPhi

Method = AblationMethod  # the one spelling; each function checks the subset it gives


@contextmanager
def ablate(
    model: HookedPhi,
    components: Sequence[Component],
    method: Method = "zero",
    *,
    reference: Int[Tensor, "batch pos"] | None = None,
    seed: int = 0,
) -> Iterator:
    """Run the model with `components` ablated inside the `with` block (see module docstring)."""
    check_method(method, get_args(ComponentAblationMethod))
    for component in components:
        component.validate(model)
    if method != "zero" and reference is None:
        raise InputError(
            f"{method} ablation needs reference tokens (a batch of prompts to average or resample)"
        )
    hooks = sorted({c.hook for c in components})
    ref_cache = (
        cache_activations(model, reference.to(model.cfg.device), hooks) if reference is not None else {}
    )
    means = {h: ref_cache[h].float().mean(dim=(0, 1)) for h in hooks} if method == "mean" else {}

    def hook_for(component: Component):
        def hook(activation: Tensor, *, hook) -> Tensor:
            out = activation.clone()
            target = component.select(out)
            if method == "zero":
                target.zero_()
            elif method == "mean":
                target.copy_(component.select(means[component.hook][None, None]).expand_as(target))
            else:
                source = ref_cache[component.hook]
                batch, n_pos = activation.shape[:2]
                if source.shape[1] < n_pos:
                    raise InputError(
                        f"resample ablation: reference prompts have {source.shape[1]} tokens, inputs {n_pos}"
                    )
                rows = permutation(max(batch, source.shape[0]), seed)[:batch] % source.shape[0]
                target.copy_(component.select(source[rows.to(source.device), :n_pos]))
            return out

        return hook

    with model.hooks(fwd_hooks=[(c.hook, hook_for(c)) for c in components]):
        yield model


def _ablated_source(
    base: RunCache, method: Method, mean_z: list[Tensor] | None, resample: RunCache | None
) -> RunCache:
    if method == "zero":
        return replace(base, z=[torch.zeros_like(z) for z in base.z])
    if method == "mean":
        return replace(base, z=[m.to(z.dtype).expand_as(z) for m, z in zip(mean_z, base.z, strict=True)])
    return resample


def ablation_sweep(
    model: HookedPhi,
    pairs: PromptPairs,
    method: Method = "zero",
    metric: MetricKind | Metric = "logit_diff",
    *,
    reference: Literal["corrupted", "shuffled"] = "corrupted",
    seed: int = 0,
    reduce: Literal["mean", "none"] = "mean",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> EffectResult:
    """Metric change (ablated - clean) when each head is ablated alone, on the clean prompts.

    `mean` averages each head's z over the reference prompts (`corrupted`: the pairs' corrupted
    prompts; `shuffled`: the clean prompts) and positions; `resample` gives each prompt the head's
    z from the corrupted prompt of its own pair (`corrupted`) or from another clean prompt of the
    same length (`shuffled`, a fixed-point-free permutation from `seed`).
    """
    check_method(method, get_args(HeadAblationMethod))
    if method == "counterfactual":
        if reference != "corrupted":
            raise InputError(
                f"method='counterfactual' takes values from the paired corrupted prompts: reference={reference!r}"
                " is not allowed with it; use reference='corrupted' (or method='resample')."
            )
        method = "resample"
    if reference not in ("corrupted", "shuffled"):
        raise InputError(f"reference={reference!r} is not allowed; use 'corrupted' or 'shuffled'.")
    # an ablation is a noising intervention: the base is the clean run, the source the ablated values
    core = contrast(model, pairs, metric, direction="noising")
    w = core.weights
    n = len(pairs)
    clean_values = core.clean_values
    mean_z = None
    if method == "mean":
        pool = [(g.corrupted if reference == "corrupted" else g.clean).z for g in core.groups]
        counts = [z[0].shape[0] * z[0].shape[1] for z in pool]
        mean_z = [
            sum(z[layer].float().sum(dim=(0, 1)) for z in pool) / sum(counts) for layer in range(w.n_layers)
        ]
    values = torch.zeros(w.n_layers, w.n_heads, n)
    for group in core.groups:
        base = core.base(group)
        resampled = None
        if method == "resample":
            if reference == "corrupted":
                resampled = group.corrupted
            else:
                rows = permutation(len(group.index), seed)
                resampled = replace(base, z=[z[rows] for z in base.z])
        source = _ablated_source(base, method, mean_z, resampled)
        for key, logits in run_variants(w, base, head_out_variants(w, base, source), memory_budget).items():
            values[key][group.index] = core.measure(logits, group.index).cpu() - clean_values[group.index]
    return core.result(
        f"ablate_head_{method}",
        ("layer", "head"),
        values,
        measures="change",
        reduce=reduce,
        extra={"method": method, "reference": reference, "value": "ablated metric - clean metric"},
    )
