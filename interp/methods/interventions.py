"""What `generate` can do to the model while it writes, and where: four interventions, one mechanism.

- `Steer(layer, vector, multiplier)`: add `multiplier * vector` to the residual stream entering block
  `layer` (`layer == n_layers`: the final residual).
- `AblateHeads(heads)`: zero each listed head's `z` (its write to the residual stream goes).
- `Hook(name, fn)`: any TransformerLens hook point, by its name (aliases accepted), with a
  TransformerLens-style function `fn(activation, site) -> activation | None` (None: the activation
  as `fn` left it, edited in place or not).
- `PatchFrom(name, source)`: put a stored activation in, e.g. `cache[name]` from
  `model.run_with_cache(corrupted)`; optionally only some heads.

Each acts at `positions`: "all", "prompt" (the prompt's positions), "generated" (the new tokens'), or a
list of absolute positions. Under the key/value cache a hook sees only the positions being run, so
`fn` gets a `Site` saying which absolute positions its tensor holds (`site.start .. site.stop`); `fn`
is called on (a copy of) the whole tensor and its result, or its in-place edit when it returns None,
is used at the chosen positions only. Arguments are checked by `interp.methods.generation_checks`. All of them are
compiled per group of equal-length prompts into edit functions on `interp.engine.incremental`'s
points, with vectors and masks moved to the model's device and dtype once, not every step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp.base.errors import InputError
from interp.engine.incremental import BLOCK_POINTS, EditFn, Site, fit_src_pos, points
from interp.model.hooks import head_axis, hook_aliases, pos_axis
from interp.model.loading import HookedPhi

Where = Literal["all", "prompt", "generated"]
Positions = Where | Sequence[int]


@dataclass
class Steer:
    """Add `multiplier * vector` to the residual stream entering block `layer` at `positions`
    (`layer == n_layers`: the final residual, just before the unembedding)."""

    layer: int
    vector: Float[Tensor, " d_model"]
    multiplier: float = 1.0
    positions: Positions = "all"


@dataclass
class AblateHeads:
    """Zero the `z` of each (layer, head) in `heads` at `positions` (its write to the residual goes)."""

    heads: list[tuple[int, int]]
    positions: Positions = "all"


@dataclass
class Hook:
    """Call `fn(activation, site)` at the TransformerLens hook point `name`; its result (None: the
    activation as `fn` left it, edited in place or not) replaces the activation at `positions`. Layouts are TransformerLens's
    (`hook_z`: batch pos head d_head; `hook_pattern`: batch head dest_pos src_pos)."""

    name: str
    fn: Callable[[Tensor, Site], Tensor | None]
    positions: Positions = "all"


@dataclass
class PatchFrom:
    """Replace the activation at hook point `name` with `source` at `positions` (and only `heads`,
    for points with a head axis). `source` is a full-sequence activation in TransformerLens's layout,
    with a batch of 1 or one row per prompt, or without the batch axis; positions past its length are
    left alone."""

    name: str
    source: Tensor
    positions: Positions = "all"
    heads: list[int] | None = None


Intervention = Steer | AblateHeads | Hook | PatchFrom


def resolve_point(model: HookedPhi, name: str) -> str:
    """The engine's name for the hook point `name` (an unknown name: an error with close matches)."""
    supported = set(points(model.cfg.n_layers))
    for alias in hook_aliases(model, name):
        if alias in supported:
            return alias
    raise InputError(
        f"hook point {name!r} cannot be used while generating. Inside a block: "
        f"{', '.join(BLOCK_POINTS)} (as blocks.<layer>.<name>); outside: hook_embed, ln_final.hook_out, "
        "hook_unembed."
    )


def _selected(positions: Positions, site: Site, n_prompt: int, device) -> Tensor | str | None:
    """Which entries of the site's position axis are chosen: None (none), "all", or their indices.
    Decided from plain integers, so a generation step whose choice is all-or-nothing adds no work."""
    if positions == "all":
        return "all"
    if positions == "prompt":
        lo, hi = 0, n_prompt
    elif positions == "generated":
        lo, hi = n_prompt, site.stop
    else:
        chosen = sorted({p - site.start for p in positions if site.start <= p < site.stop})
        if not chosen:
            return None
        return "all" if len(chosen) == site.n else torch.tensor(chosen, device=device)
    lo, hi = max(lo, site.start), min(hi, site.stop)
    if lo >= hi:
        return None
    if (lo, hi) == (site.start, site.stop):
        return "all"
    return torch.arange(lo - site.start, hi - site.start, device=device)


def _merge(old: Tensor, new: Tensor, axis: int, chosen: Tensor | str) -> Tensor:
    """`new` at the chosen entries of `axis`, `old` elsewhere."""
    if isinstance(chosen, str):
        return new
    return old.index_copy(axis, chosen, new.index_select(axis, chosen))


def compile_edits(
    model: HookedPhi,
    interventions: Sequence[Intervention],
    n_prompt: int,
    rows: Sequence[int],
    n_total: int,
    dtype: torch.dtype,
    device,
    wrap: Callable[[Intervention, EditFn], EditFn] | None = None,
) -> dict[str, list[EditFn]]:
    """Edit functions per engine point for one group: prompts `rows` (indices into the `n_total`
    prompts given to `generate`) of `n_prompt` tokens. `wrap(intervention, fn)`, if given, replaces
    each edit function (e.g. to watch what it writes)."""
    edits: dict[str, list[EditFn]] = {}
    for item in interventions:
        for name, fn in _compile(model, item, n_prompt, rows, n_total, dtype, device):
            edits.setdefault(name, []).append(fn if wrap is None else wrap(item, fn))
    return edits


def _compile(
    model: HookedPhi, item: Intervention, n_prompt: int, rows: Sequence[int], n_total: int, dtype, device
) -> list[tuple[str, EditFn]]:
    """One intervention's (engine point, edit function) pairs."""
    n_layers = model.cfg.n_layers
    if isinstance(item, Steer):
        name = (
            f"blocks.{n_layers - 1}.hook_resid_post"
            if item.layer == n_layers
            else f"blocks.{item.layer}.hook_resid_pre"
        )
        return [(name, _steer(item, n_prompt, dtype, device))]
    if isinstance(item, AblateHeads):
        return [
            (
                f"blocks.{layer}.attn.hook_z",
                _ablate(
                    sorted({h for la, h in item.heads if la == layer}),
                    item.positions,
                    n_prompt,
                    model.cfg.n_heads,
                    dtype,
                    device,
                ),
            )
            for layer in sorted({la for la, _ in item.heads})
        ]
    if isinstance(item, Hook):
        return [(resolve_point(model, item.name), _hook(item, n_prompt))]
    name = resolve_point(model, item.name)
    return [(name, _patch(item, name, n_prompt, rows, n_total, dtype, device))]


def _steer(item: Steer, n_prompt: int, dtype, device) -> EditFn:
    delta = (item.multiplier * item.vector.to(device, torch.float32)).to(dtype)  # once, not every step

    def edit(x: Tensor, site: Site) -> Tensor:
        chosen = _selected(item.positions, site, n_prompt, x.device)
        if chosen is None:
            return x
        return _merge(x, x + delta, 1, chosen)

    return edit


def _ablate(heads: list[int], positions: Positions, n_prompt: int, n_heads: int, dtype, device) -> EditFn:
    keep = torch.ones(n_heads, 1, dtype=dtype, device=device)  # head d_head (broadcast)
    keep[heads] = 0

    def edit(z: Tensor, site: Site) -> Tensor:  # batch pos head d_head
        chosen = _selected(positions, site, n_prompt, z.device)
        if chosen is None:
            return z
        return _merge(z, z * keep, 1, chosen)

    return edit


def _hook(item: Hook, n_prompt: int) -> EditFn:
    def edit(x: Tensor, site: Site) -> Tensor:
        chosen = _selected(item.positions, site, n_prompt, x.device)
        if chosen is None:
            return x
        # fn gets its own copy: an in-place edit (TransformerLens's idiom, returning None) then
        # reaches the chosen positions only, and never a tensor the forward still reads
        given = x.clone()
        out = item.fn(given, site)
        if out is None:
            out = given
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise InputError(
                f"Hook({item.name!r}) returned {got}; it must return None or a tensor of the activation's "
                f"shape {tuple(x.shape)} (positions {site.start}..{site.stop - 1})."
            )
        return _merge(x, out.to(x.dtype), pos_axis(site.name), chosen)

    return edit


def _patch(
    item: PatchFrom, name: str, n_prompt: int, rows: Sequence[int], n_total: int, dtype, device
) -> EditFn:
    axis = pos_axis(name)
    source = item.source.detach()  # its layout and batch checked by generation_checks
    if source.dim() == _ndim(name):
        source = source if source.shape[0] == 1 else source[list(rows)]
    else:
        source = source[None]
    source = source.to(device, dtype)
    n_source = source.shape[axis]
    heads = None
    if item.heads is not None:
        heads = torch.tensor(sorted(set(item.heads)), device=device)

    def edit(x: Tensor, site: Site) -> Tensor:
        chosen = _selected(item.positions, site, n_prompt, x.device)
        if chosen is None:
            return x
        offsets = range(site.n) if isinstance(chosen, str) else chosen.tolist()
        covered = [site.start + i for i in offsets if site.start + i < n_source]  # absolute positions
        if not covered:
            return x
        src = source.index_select(axis, torch.tensor(covered, device=source.device))
        if axis == 2:  # scores / pattern: the source axis to the current length
            src = fit_src_pos(src, x.shape[-1], name)
        expected = list(x.shape)
        expected[axis] = src.shape[axis]
        if list(src.shape[1:]) != expected[1:]:
            raise InputError(
                f"PatchFrom({item.name!r}) source has shape {tuple(item.source.shape)}; at {name} the model has "
                f"{tuple(x.shape)} for positions {site.start}..{site.stop - 1} ({layout(name)})."
            )
        src = src.expand(x.shape[0], *src.shape[1:])
        index = torch.tensor([p - site.start for p in covered], device=x.device)
        if heads is not None:
            current = x.index_select(axis, index)
            src = current.index_copy(head_axis(name), heads, src.index_select(head_axis(name), heads))
        return x.index_copy(axis, index, src)

    return edit


def _ndim(name: str) -> int:
    return 4 if head_axis(name) is not None else 3


def layout(name: str) -> str:
    """The point's TransformerLens layout, e.g. "batch pos head d_head"."""
    point = name.split(".", 2)[2] if name.startswith("blocks.") else name
    if point in ("attn.hook_attn_scores", "attn.hook_pattern"):
        return "batch head dest_pos src_pos"
    if head_axis(name) is not None:
        return "batch pos head d_head"
    if point in ("mlp.hook_pre", "mlp.hook_post"):
        return "batch pos d_mlp"
    if point == "hook_unembed":
        return "batch pos d_vocab"
    return "batch pos d_model"
