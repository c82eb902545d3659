"""Exact activation patching: one general sweep function and small per-site variant builders.

Activation patching runs the model on one prompt (the *base* run) while replacing one activation
with its value from another prompt (the *source* run), and measures how the output moves. With
clean prompts (the model says the answer) and corrupted prompts (it does not):

- `direction="denoising"`: base = corrupted, source = clean. A large effect means the activation
  carries enough to restore the clean behaviour ("is it sufficient?").
- `direction="noising"`: base = clean, source = corrupted. A large effect means the behaviour
  breaks without it ("is it necessary?").

Sites (the grid each returns, in this axis order):

| site | dims | what is replaced |
| --- | --- | --- |
| `resid_pre` | layer pos | the residual stream entering block `layer` at `pos` |
| `attn_out`, `mlp_out` | layer pos | the attention / MLP output of block `layer` at `pos` |
| `head_out` | layer head | one head's output (`hook_z`) at every position |
| `head_out_by_pos` | layer head pos | one head's output at one position |
| `head_q`, `head_k`, `head_v` | layer head | one head's queries / keys / values at every position |
| `head_pattern` | layer head | one head's attention pattern |

Results equal transformer-lens's `patching.get_act_patch_*` functions (tested to 1e-5), but the
engine (`interp.engine.batched`) computes only what a patch can change and batches many patches per
forward. Phi has no `resid_mid`: attention and MLP of a block read the same input in parallel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp.base.errors import InputError
from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptError, PromptPairs
from interp.engine.batched import Variant, run_variants
from interp.engine.forward import PhiWeights, RunCache, attend
from interp.methods.contrastive import Direction, check_direction, contrast
from interp.methods.result import EffectResult
from interp.model.loading import HookedPhi

Site = Literal[
    "resid_pre",
    "attn_out",
    "mlp_out",
    "head_out",
    "head_out_by_pos",
    "head_q",
    "head_k",
    "head_v",
    "head_pattern",
]
SITE_DIMS: dict[str, tuple[str, ...]] = {
    "resid_pre": ("layer", "pos"),
    "attn_out": ("layer", "pos"),
    "mlp_out": ("layer", "pos"),
    "head_out": ("layer", "head"),
    "head_out_by_pos": ("layer", "head", "pos"),
    "head_q": ("layer", "head"),
    "head_k": ("layer", "head"),
    "head_v": ("layer", "head"),
    "head_pattern": ("layer", "head"),
}
DEFAULT_MEMORY_BUDGET = 2 * 1024**3


def sweep(
    model: HookedPhi,
    pairs: PromptPairs,
    site: Site,
    metric: MetricKind | Metric = "logit_diff",
    *,
    direction: Direction = "denoising",
    reduce: Literal["mean", "none"] = "mean",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> EffectResult:
    """Patch every index of `site` (see the module table) and return the patched metric for each."""
    if site not in SITE_DIMS:
        raise InputError(f"unknown patching site {site!r}; allowed: {', '.join(SITE_DIMS)}")
    check_direction(direction)
    if "pos" in SITE_DIMS[site] and not pairs.same_length:
        raise PromptError(
            f"Site {site!r} sweeps positions, which needs every prompt to have the same token length; "
            f"got lengths {sorted(set(pairs.lengths.tolist()))}. Split the dataset by template, or use a "
            "per-head site (head_out, head_q, ...) which handles mixed lengths."
        )
    core = contrast(model, pairs, metric, direction=direction)
    w = core.weights
    shape = grid_shape(site, w, pairs)
    values = torch.zeros(*shape, len(pairs), device=core.clean_logits.device)
    for group in core.groups:
        base, source = core.base(group), core.source(group)
        variants = VARIANT_BUILDERS[site](w, base, source)
        for key, logits in run_variants(w, base, variants, memory_budget).items():
            values[key][group.index.to(values.device)] = core.measure(logits, group.index)
    return core.result(site, SITE_DIMS[site], values, measures="metric", reduce=reduce)


def grid_shape(site: str, w: PhiWeights, pairs: PromptPairs) -> tuple[int, ...]:
    """The sizes of `site`'s dims for these weights and prompts (pos: the longest prompt)."""
    sizes = {"layer": w.n_layers, "head": w.n_heads, "pos": int(pairs.lengths.max())}
    return tuple(sizes[d] for d in SITE_DIMS[site])


# --- per-site variant builders: each says which residual changes, from where, by how much ---


def _replace_at(pos_offset: int, new: Float[Tensor, "batch d_model"]) -> Callable[[Tensor], Tensor]:
    def make(
        resid: Float[Tensor, "batch pos d_model"],
    ) -> Float[Tensor, "batch pos d_model"]:  # pos: from the variant's start
        out = resid.clone()
        out[:, pos_offset] = new
        return out

    return make


def _add(delta: Float[Tensor, "batch ..."], pos_offset: int | None = None) -> Callable[[Tensor], Tensor]:
    def make(resid: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        out = resid.clone()
        if pos_offset is None:
            out += delta
        else:
            out[:, pos_offset] += delta
        return out

    return make


def _head_write(w: PhiWeights, layer: int, head: int, z: Float[Tensor, "... d_head"]) -> Tensor:
    return z @ w.W_O[layer][head]


def resid_pre_variants(w: PhiWeights, base: RunCache, source: RunCache) -> list[Variant]:
    """(layer, pos): the residual entering block `layer` at `pos` takes the source's value."""
    n_pos = base.resid_pre[0].shape[1]
    return [
        Variant((layer, pos), layer, pos, _replace_at(0, source.resid_pre[layer][:, pos]))
        for layer in range(w.n_layers)
        for pos in range(n_pos)
    ]


def _output_variants(name: str) -> Callable[[PhiWeights, RunCache, RunCache], list[Variant]]:
    def build(w: PhiWeights, base: RunCache, source: RunCache) -> list[Variant]:
        """(layer, pos): block `layer`'s output at `pos` takes the source's value."""
        n_pos = base.resid_pre[0].shape[1]
        variants = []
        for layer in range(w.n_layers):
            delta = getattr(source, name)[layer] - getattr(base, name)[layer]  # [batch, pos, d_model]
            for pos in range(n_pos):
                variants.append(Variant((layer, pos), layer + 1, pos, _add(delta[:, pos], 0)))
        return variants

    return build


def head_out_variants(w: PhiWeights, base: RunCache, source: RunCache) -> list[Variant]:
    """(layer, head): one head's z at every position takes the source's value."""
    variants = []
    for layer in range(w.n_layers):
        for head in range(w.n_heads):
            dz = source.z[layer][:, :, head] - base.z[layer][:, :, head]  # [batch, pos, d_head]
            variants.append(Variant((layer, head), layer + 1, 0, _add(_head_write(w, layer, head, dz))))
    return variants


def head_out_by_pos_variants(w: PhiWeights, base: RunCache, source: RunCache) -> list[Variant]:
    """(layer, head, pos): one head's z at one position takes the source's value."""
    n_pos = base.resid_pre[0].shape[1]
    variants = []
    for layer in range(w.n_layers):
        for head in range(w.n_heads):
            dz = source.z[layer][:, :, head] - base.z[layer][:, :, head]
            write = _head_write(w, layer, head, dz)  # [batch, pos, d_model]
            for pos in range(n_pos):
                variants.append(Variant((layer, head, pos), layer + 1, pos, _add(write[:, pos], 0)))
    return variants


def _recomputed_head_variants(part: str) -> Callable[[PhiWeights, RunCache, RunCache], list[Variant]]:
    def build(w: PhiWeights, base: RunCache, source: RunCache) -> list[Variant]:
        """(layer, head): recompute the head with the source's q, k, v or pattern; the rest from base."""
        variants = []
        for layer in range(w.n_layers):
            for head in range(w.n_heads):
                q, k, v = (r[layer][:, head] for r in (base.q, base.k, base.v))  # [batch, pos, d_head]
                if part == "pattern":
                    z = source.pattern[layer][:, head] @ v
                else:
                    q = source.q[layer][:, head] if part == "q" else q
                    k = source.k[layer][:, head] if part == "k" else k
                    v = source.v[layer][:, head] if part == "v" else v
                    z = attend(q[:, None], k[:, None], v[:, None], 0)[0][:, :, 0]
                dz = z - base.z[layer][:, :, head]
                variants.append(Variant((layer, head), layer + 1, 0, _add(_head_write(w, layer, head, dz))))
        return variants

    return build


VARIANT_BUILDERS = {
    "resid_pre": resid_pre_variants,
    "attn_out": _output_variants("attn_out"),
    "mlp_out": _output_variants("mlp_out"),
    "head_out": head_out_variants,
    "head_out_by_pos": head_out_by_pos_variants,
    "head_q": _recomputed_head_variants("q"),
    "head_k": _recomputed_head_variants("k"),
    "head_v": _recomputed_head_variants("v"),
    "head_pattern": _recomputed_head_variants("pattern"),
}
