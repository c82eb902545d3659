"""Attribution patching: a first-order (gradient) estimate of every patching effect at once.

Exact patching needs a forward pass per patched activation. Attribution patching (Nanda 2023;
Syed et al. 2023) linearises the metric around the base run instead:

    effect(a) ~= (a_source - a_base) . d metric / d a   (evaluated on the base run)

so one source forward, one base forward and one backward give an estimate for every head, every
position and every layer. It is exact when the metric is linear in `a` and degrades where patches
move the model far (e.g. large attention-pattern changes), so check it against exact patching on a
subset before trusting a ranking: `agreement` reports Pearson and Spearman correlations.

Gradients come from `interp.engine.forward` with autograd (no backward hooks on the bridge are needed),
so the numbers do not depend on hook support for backward passes.
"""

from __future__ import annotations

from typing import Literal

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptPairs
from interp.methods.contrastive import Contrast, Direction, LengthGroup, contrast
from interp.methods.result import EffectResult
from interp.model.loading import HookedPhi

ESTIMATED_SITES: dict[str, tuple[str, ...]] = {
    "head_out": ("layer", "head"),
    "head_out_by_pos": ("layer", "head", "pos"),
    "resid_pre": ("layer", "pos"),
    "attn_out": ("layer", "pos"),
    "mlp_out": ("layer", "pos"),
}


def attribution_patch(
    model: HookedPhi,
    pairs: PromptPairs,
    metric: MetricKind | Metric = "logit_diff",
    *,
    direction: Direction = "denoising",
    reduce: Literal["mean", "none"] = "mean",
) -> dict[str, EffectResult]:
    """Estimated effect (patched metric - base metric) for every site in ESTIMATED_SITES.

    One source forward, one base forward with autograd and one backward per length group: the base
    run the contrastive core builds is the graph the gradients come from.
    """
    core = contrast(model, pairs, metric, direction=direction, grad_base=True)
    w = core.weights
    n, n_pos = len(pairs), int(pairs.lengths.max())
    sizes = {"layer": w.n_layers, "head": w.n_heads, "pos": n_pos}
    values = {site: torch.zeros(*(sizes[d] for d in dims), n) for site, dims in ESTIMATED_SITES.items()}
    for group in core.groups:
        _accumulate(core, group, values)
    return {
        site: core.result(
            f"attrib_{site}",
            dims,
            values[site],
            measures="change",
            reduce=reduce,
            extra={"estimate_of": "patched metric - base metric"},
        )
        for site, dims in ESTIMATED_SITES.items()
    }


def _accumulate(core: Contrast, group: LengthGroup, values: dict[str, Tensor]) -> None:
    """Add this group's estimates, (source - base activation) . d metric / d activation, to `values`."""
    w, index = core.weights, group.index
    base, source = core.base(group), core.source(group)
    group_pos = base.resid_pre[0].shape[1]
    total = core.measure(base.final_logits, index).sum()  # prompts are independent: d(sum)/d(act i) is theirs
    names = ["resid_pre", "z", "attn_out", "mlp_out"]
    flat = [t for name in names for t in getattr(base, name)]
    grads = torch.autograd.grad(total, flat)
    L = w.n_layers
    for layer in range(L):
        g_resid, g_z, g_attn, g_mlp = (grads[i * L + layer] for i in range(4))
        d_resid = source.resid_pre[layer] - base.resid_pre[layer].detach()
        d_z = source.z[layer] - base.z[layer].detach()
        d_attn = source.attn_out[layer] - base.attn_out[layer].detach()
        d_mlp = source.mlp_out[layer] - base.mlp_out[layer].detach()
        by_pos = {
            "resid_pre": einops.reduce(d_resid * g_resid, "batch pos d_model -> pos batch", "sum"),
            "attn_out": einops.reduce(d_attn * g_attn, "batch pos d_model -> pos batch", "sum"),
            "mlp_out": einops.reduce(d_mlp * g_mlp, "batch pos d_model -> pos batch", "sum"),
        }
        head_pos = einops.reduce(d_z * g_z, "batch pos head d_head -> head pos batch", "sum").float().cpu()
        for site, v in by_pos.items():
            values[site][layer, :group_pos][:, index] = v.float().cpu()
        values["head_out_by_pos"][layer][:, :group_pos][:, :, index] = head_pos
        values["head_out"][layer][:, index] = head_pos.sum(1)


def agreement(estimate: Float[Tensor, " *dims"], exact_effect: Float[Tensor, " *dims"]) -> dict[str, float]:
    """Pearson and Spearman correlation between attribution estimates and exact effects."""
    a, b = estimate.flatten().double(), exact_effect.flatten().double()

    def pearson(x: Float[Tensor, " _"], y: Float[Tensor, " _"]) -> float:  # flattened *dims
        x, y = x - x.mean(), y - y.mean()
        return float((x * y).sum() / (x.norm() * y.norm()))

    def ranks(x: Float[Tensor, " _"]) -> Float[Tensor, " _"]:
        return x.argsort().argsort().double()

    return {"pearson": pearson(a, b), "spearman": pearson(ranks(a), ranks(b)), "n": int(a.numel())}
