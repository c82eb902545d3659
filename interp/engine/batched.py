"""The batched engine behind every exact patching sweep: run only what a patch can change.

It is the engine's resumed driver: it runs the one block body (`interp.engine.forward.block`) from a
layer and position on, with the base run's keys and values as the prefix; a variant's `make` is the
edit at its entry block's `hook_resid_pre` (base residual there -> patched residual), and the variants
ride on a leading axis of every block call.

A patch is a *variant* of the base run: it enters the residual stream at some layer (`entry`,
`n_layers` meaning "straight to the unembedding") from some position `start` on, as the base run's
residual there plus a change. Nothing before `entry` and nothing before `start` can differ from the
base run, so the engine

- groups variants by `start` and runs blocks only on positions `start .. end`, taking the keys and
  values of earlier positions from the base run (shared by all variants, not copied);
- staggers entry: at layer l the batch holds every variant that entered at or before l, so one
  block call serves many patch indices (what wins on a GPU), without recomputing anyone's prefix;
- runs the last block, the final LayerNorm and the unembedding only at the final position, which
  is all a metric reads;
- chunks variants to a memory budget, and keeps results on the device until the sweep ends (no
  per-index host sync).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.engine.forward import PhiWeights, RunCache, block, unembed

# builds the entry residual [batch, pos - start, d_model] for one variant from the base residual there
EntryFn = Callable[[Float[Tensor, "batch pos d_model"]], Float[Tensor, "batch pos d_model"]]


@dataclass
class Variant:
    """One patch: where its result goes, the block and position it enters at, and how it changes the residual."""

    key: tuple[int, ...]  # where the result goes in the output grid
    entry: int  # first block that runs on the patched residual (n_layers: none)
    start: int  # first position that can differ from the base run
    make: EntryFn  # base residual at (entry, start:) -> patched residual


def base_residual(base: RunCache, layer: int) -> Float[Tensor, "batch pos d_model"]:
    """The residual stream entering block `layer` (the final residual for layer == n_layers)."""
    return base.resid_final if layer == len(base.resid_pre) else base.resid_pre[layer]


def variant_bytes(w: PhiWeights, batch: int, n_pos: int, d_mlp: int, itemsize: int) -> int:
    """Peak activation bytes one variant adds inside a block (scores dominate with long prompts)."""
    d_model = w.W_E.shape[1]
    per_pos = 6 * d_model + 3 * w.n_heads * w.d_head + d_mlp + 2 * w.n_heads * n_pos
    return batch * n_pos * per_pos * itemsize


def run_variants(
    w: PhiWeights,
    base: RunCache,
    variants: list[Variant],
    memory_budget: int,
) -> dict[tuple[int, ...], Tensor]:
    """Final-position logits [batch, d_vocab] of every variant, keyed by `Variant.key`."""
    n_layers = w.n_layers
    batch, n_pos, _ = base.resid_pre[0].shape
    d_mlp = w.W_in[0].shape[0]
    itemsize = base.resid_pre[0].element_size()
    by_start: dict[int, list[Variant]] = defaultdict(list)
    for variant in variants:
        by_start[variant.start].append(variant)
    results: dict[tuple[int, ...], Tensor] = {}
    for start, group in sorted(by_start.items()):
        per_variant = max(1, variant_bytes(w, batch, n_pos - start, d_mlp, itemsize))
        chunk = max(1, memory_budget // per_variant)
        group = sorted(group, key=lambda v: v.entry)
        for i in range(0, len(group), chunk):
            _run_chunk(w, base, group[i : i + chunk], start, n_layers, n_pos, results)
    return results


@torch.no_grad()
def _run_chunk(w, base, chunk: list[Variant], start: int, n_layers: int, n_pos: int, results: dict) -> None:
    x: Float[Tensor, "variant batch pos d_model"] | None = None  # pos: from `start`
    order: list[Variant] = []
    for layer in range(chunk[0].entry, n_layers + 1):
        entering = [v for v in chunk if v.entry == layer]
        if entering:
            resid = base_residual(base, layer)[:, start:]
            fresh = torch.stack([v.make(resid) for v in entering])
            if x is not None and layer == n_layers:
                fresh = fresh[..., -1:, :]  # x already holds only the final position
            x = fresh if x is None else torch.cat([x, fresh])
            order += entering
        if x is None or layer == n_layers:
            continue
        last = layer == n_layers - 1
        out = block(
            w,
            layer,
            x,
            start,
            base.k[layer][:, :, :start],
            base.v[layer][:, :, :start],
            query_from=n_pos - 1 if last else None,
        )
        x = out.resid_post
    logits = unembed(w, x[..., -1, :])  # [n_variants, batch, d_vocab]
    for variant, row in zip(order, logits, strict=True):
        results[variant.key] = row
