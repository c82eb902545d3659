"""Ablations: remove a component's contribution and see what breaks.

`ablate(model, components, method)` is a context manager: inside the block the model runs with the
components' outputs replaced; the hooks are removed when the block ends, also when it raises.
Blocks nest, so ablations compose. Each component becomes one `Ablate(component, method)` of the
intervention vocabulary (`interp.methods.interventions`), run on the bridge by the same code as
`run_with_interventions(..., target="bridge")` (`interp.methods.hooked_run.on_bridge`). Methods:

- `zero`: the output becomes 0 (for a head: its `hook_z`, so its write `z @ W_O` is 0 while the
  layer's output bias stays; for a whole attention layer or MLP: the whole output, bias included).
- `mean`: the output's mean over a reference dataset (all prompts and positions; a list of token
  tensors for prompts of several lengths): removes what varies while keeping the average signal, so
  the model is less off-distribution than with zeros.
- `resample`: each prompt gets the output from another prompt of a reference dataset at the same
  positions (Chan et al. 2022's resampling ablation).
- `counterfactual` (`ablation_sweep` only): each prompt gets the output from its own pair's corrupted
  prompt, i.e. `resample` with `reference="corrupted"`; the spelling circuit evaluation uses.

The methods are `interp.methods.vocabulary.AblationMethod`, one spelling for every method.

`ablation_sweep` ablates every head (or the `Ablate` items given, `head_ablations`), one at a time,
with many heads per forward pass (the patching engine: an ablated head is a head whose `z` is patched
from the values its `Ablate`, compiled by `compile_edits` on the engine, writes).
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
from interp.engine.edits import Site
from interp.engine.forward import PhiWeights, RunCache
from interp.engine.hook_points import split_name
from interp.methods.activation_patching import DEFAULT_MEMORY_BUDGET, head_out_variants
from interp.methods.contrastive import contrast
from interp.methods.hooked_run import engine_point, on_bridge
from interp.methods.interventions import Ablate, Component, compile_edits
from interp.methods.result import EffectResult
from interp.methods.vocabulary import (
    AblationMethod,
    ComponentAblationMethod,
    HeadAblationMethod,
    check_method,
)
from interp.model.loading import HookedPhi

Method = AblationMethod  # the one spelling; each function checks the subset it gives


@contextmanager
def ablate(
    model: HookedPhi,
    components: Sequence[Component],
    method: Method = "zero",
    *,
    reference: Int[Tensor, "batch pos"] | Sequence[Int[Tensor, "_batch _pos"]] | None = None,
    seed: int = 0,
) -> Iterator[HookedPhi]:
    """Run the model with `components` ablated inside the `with` block (see module docstring): one
    `Ablate(component, method, reference, seed)` each, run by `hooked_run.on_bridge` as
    `run_with_interventions(target="bridge")` runs them (hooks removed on leaving, also on a raise)."""
    check_method(method, get_args(ComponentAblationMethod))
    if isinstance(components, Component) or not isinstance(components, Sequence):
        raise InputError(
            f"components={components!r} is not allowed; use a list of Component, e.g. [Component('head', 0, 1)]."
        )
    for component in components:
        if not isinstance(component, Component):
            raise InputError(
                f"ablate() takes Components (head, attn, mlp or neuron), not {component!r}; for a hook "
                "point by name use run_with_interventions(..., [Ablate(name, method)], target='bridge')."
            )
        component.validate(model)
    if method != "zero" and reference is None:
        raise InputError(
            f"{method} ablation needs reference tokens (a batch of prompts to average or resample)"
        )
    items = [Ablate(c, method, reference=reference, seed=seed) for c in components]
    with on_bridge(model, items):
        yield model


def head_ablations(model: HookedPhi, method: HeadAblationMethod, seed: int = 0) -> list[Ablate]:
    """One `Ablate` per head of the model, in (layer, head) order, for `ablation_sweep` (their
    `reference` left None: the sweep takes it from the pairs)."""
    cfg = model.cfg
    return [
        Ablate(Component("head", layer, head), method, seed=seed)
        for layer in range(cfg.n_layers)
        for head in range(cfg.n_heads)
    ]


def _check_sweep(model: HookedPhi, ablations: Sequence[Ablate]) -> str:
    """The one method of a sweep's `Ablate` items (one seed too), each a head given once at every position
    with no reference of its own; else an error naming the item and what is allowed."""
    if isinstance(ablations, str | Ablate) or not isinstance(ablations, Sequence) or not ablations:
        raise InputError(
            f"ablation={ablations!r} is not allowed; use a method ({', '.join(get_args(HeadAblationMethod))}) "
            "or a non-empty list of Ablate(Component('head', layer, head), method) (see head_ablations)."
        )
    for item in ablations:
        if (
            not (isinstance(item, Ablate) and isinstance(item.component, Component))
            or item.component.kind != "head"
        ):
            raise InputError(
                f"ablation_sweep ablates heads, one at a time: {item!r} is not allowed; use "
                "Ablate(Component('head', layer, head), method), or ablate() / run_with_interventions "
                "for other components."
            )
        item.component.validate(model)
        if item.reference is not None:
            raise InputError(
                f"{item!r} has a reference of its own; ablation_sweep draws reference prompts from the pairs "
                "(reference='corrupted' or 'shuffled'): leave reference=None."
            )
        if item.positions != "all":
            raise InputError(
                f"{item!r} is at positions={item.positions!r}; ablation_sweep ablates a head at every "
                "position: leave positions='all' (or use run_with_interventions for some positions)."
            )
    kinds = {(item.method, item.seed) for item in ablations}
    if len(kinds) > 1:
        raise InputError(
            f"ablation_sweep runs one method and seed per sweep; these items have {sorted(kinds)}: sweep each "
            "separately."
        )
    heads = [(item.component.layer, item.component.index) for item in ablations]
    twice = sorted({h for h in heads if heads.count(h) > 1})
    if twice:
        raise InputError(f"heads {twice} are given more than once; give each head once.")
    method, _ = kinds.pop()
    return check_method(method, get_args(HeadAblationMethod))


def _ablated_source(
    model: HookedPhi,
    w: PhiWeights,
    base: RunCache,
    ablation: Ablate,
    layers: Sequence[int],
    runs: dict[int, RunCache],
) -> RunCache:
    """The base run with the `z` of `layers` replaced as `ablation` (a head's `Ablate`, its reference
    filled in) says for each of their heads, compiled by `compile_edits` as
    `run_with_interventions(target="engine")` compiles it. Every method treats each head alike, so one
    `Ablate` of a layer's whole `hook_z` gives all its heads at once; reference activations are the
    `z` of the runs already made (`runs`, by the tokens' identity)."""

    def gather(tokens: Int[Tensor, "batch pos"], names: Sequence[str]) -> dict[str, Tensor]:
        return {name: runs[id(tokens)].z[split_name(name)[0]] for name in names}

    items = [replace(ablation, component=f"blocks.{layer}.attn.hook_z") for layer in layers]
    edits = compile_edits(
        model, items, None, None, None, w.W_E.dtype, w.W_E.device, resolve=engine_point, gather=gather
    )
    z = list(base.z)
    for name, fns in edits.items():  # blocks.<layer>.attn.hook_z: batch pos head d_head
        layer = split_name(name)[0]
        site = Site(name, layer, 0, z[layer].shape[1])
        for fn in fns:
            z[layer] = fn(z[layer], site)
    return replace(base, z=z)


def ablation_sweep(
    model: HookedPhi,
    pairs: PromptPairs,
    ablation: Method | Sequence[Ablate] = "zero",
    metric: MetricKind | Metric = "logit_diff",
    *,
    reference: Literal["corrupted", "shuffled"] = "corrupted",
    seed: int | None = None,
    reduce: Literal["mean", "none"] = "mean",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> EffectResult:
    """Metric change (ablated - clean) when each head is ablated alone, on the clean prompts.

    `ablation` is a method (every head, `head_ablations(model, method, seed)`) or a list of
    `Ablate(Component("head", layer, head), method)` items (heads not listed: NaN), compiled by
    `compile_edits` as every intervention is. `mean` averages each head's z over the reference prompts
    (`corrupted`: the pairs' corrupted prompts; `shuffled`: the clean prompts) and positions; `resample`
    gives each prompt the head's z from the corrupted prompt of its own pair (`corrupted`: the
    vocabulary's `counterfactual`) or from another clean prompt of the same length (`shuffled`, a
    fixed-point-free permutation from `seed`). `seed` goes with a method name (Ablate items carry
    their own).
    """
    if isinstance(ablation, str):
        check_method(ablation, get_args(HeadAblationMethod))
        ablations = head_ablations(model, ablation, 0 if seed is None else seed)
    elif seed is not None:
        raise InputError(
            f"seed={seed} goes with a method name; Ablate items carry their own seed (Ablate(..., seed=...))."
        )
    else:
        ablations = list(ablation) if isinstance(ablation, Sequence) else ablation
    method = _check_sweep(model, ablations)
    if method == "counterfactual" and reference != "corrupted":
        raise InputError(
            f"method='counterfactual' takes values from the paired corrupted prompts: reference={reference!r}"
            " is not allowed with it; use reference='corrupted' (or method='resample')."
        )
    if reference not in ("corrupted", "shuffled"):
        raise InputError(f"reference={reference!r} is not allowed; use 'corrupted' or 'shuffled'.")
    # resampling from each pair's own corrupted prompt is the vocabulary's counterfactual ablation
    compiled = "counterfactual" if method == "resample" and reference == "corrupted" else method
    ablations = [replace(item, method=compiled) for item in ablations]  # one method and seed (checked)
    method = "resample" if method == "counterfactual" else method  # the result's name, as before
    # an ablation is a noising intervention: the base is the clean run, the source the ablated values
    core = contrast(model, pairs, metric, direction="noising")
    w = core.weights
    clean_values = core.clean_values
    groups = [(g, pairs.select(g.index)) for g in core.groups]
    runs: dict[int, RunCache] = {}
    for group, tokens in groups:
        runs[id(tokens.clean_tokens)], runs[id(tokens.corrupted_tokens)] = group.clean, group.corrupted
    side = "corrupted_tokens" if reference == "corrupted" else "clean_tokens"
    pooled = [getattr(tokens, side) for _, tokens in groups]  # mean: every prompt, every length
    listed = {(item.component.layer, item.component.index) for item in ablations}
    layers = sorted({layer for layer, _ in listed})
    values = torch.full((w.n_layers, w.n_heads, len(pairs)), float("nan"))
    for group, tokens in groups:
        base = core.base(group)
        drawn = None if compiled == "zero" else pooled if compiled == "mean" else getattr(tokens, side)
        ablation = replace(ablations[0], reference=drawn)
        source = _ablated_source(model, w, base, ablation, layers, runs)
        variants = [v for v in head_out_variants(w, base, source) if v.key in listed]
        for key, logits in run_variants(w, base, variants, memory_budget).items():
            values[key][group.index] = core.measure(logits, group.index).cpu() - clean_values[group.index]
    return core.result(
        f"ablate_head_{method}",
        ("layer", "head"),
        values,
        measures="change",
        reduce=reduce,
        extra={"method": method, "reference": reference, "value": "ablated metric - clean metric"},
    )
