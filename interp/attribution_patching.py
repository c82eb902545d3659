"""Attribution patching: a first-order (gradient) estimate of every patching effect at once.

Exact patching needs a forward pass per patched activation. Attribution patching (Nanda 2023;
Syed et al. 2023) linearises the metric around the base run instead:

    effect(a) ~= (a_source - a_base) . d metric / d a   (evaluated on the base run)

so one source forward, one base forward and one backward give an estimate for every head, every
position and every layer. It is exact when the metric is linear in `a` and degrades where patches
move the model far (e.g. large attention-pattern changes), so check it against exact patching on a
subset before trusting a ranking: `agreement` reports Pearson and Spearman correlations.

Gradients come from `interp.forward` with autograd (no backward hooks on the bridge are needed),
so the numbers do not depend on hook support for backward passes.
"""

from __future__ import annotations

from typing import Literal

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from interp.forward import PhiWeights, block, forward_logits, run_with_cache, unembed
from interp.hooks import active_hook_count
from interp.metrics import Metric, MetricKind, make_metric
from interp.patching import PatchResult
from interp.prompts import PromptPairs

ATTRIBUTION_SITES = {
    "head_out": ("layer", "head"),
    "head_out_by_pos": ("layer", "head", "pos"),
    "resid_pre": ("layer", "pos"),
    "attn_out": ("layer", "pos"),
    "mlp_out": ("layer", "pos"),
}


def _base_run_with_grad(w: PhiWeights, tokens: Tensor) -> tuple[Tensor, dict[str, list[Tensor]]]:
    """Final-position logits and the activations (graph nodes) attribution differentiates against."""
    x = w.W_E[tokens].detach().requires_grad_(True)
    acts: dict[str, list[Tensor]] = {"resid_pre": [], "z": [], "attn_out": [], "mlp_out": []}
    for layer in range(w.n_layers):
        acts["resid_pre"].append(x)
        out = block(w, layer, x, 0, keep=True)
        acts["z"].append(out.z)
        acts["attn_out"].append(out.attn_out)
        acts["mlp_out"].append(out.mlp_out)
        x = out.resid_post
    return unembed(w, x[:, -1]), acts


def attribution_patch(
    model,
    pairs: PromptPairs,
    metric: MetricKind | Metric = "logit_diff",
    *,
    direction: Literal["denoising", "noising"] = "denoising",
    reduce: Literal["mean", "none"] = "mean",
) -> dict[str, PatchResult]:
    """Estimated effect (patched metric - base metric) for every site in ATTRIBUTION_SITES."""
    if active_hook_count(model):
        raise RuntimeError("The model has hooks attached; remove them before attribution patching.")
    w = PhiWeights.from_model(model)
    device = model.cfg.device
    n, n_pos = len(pairs), int(pairs.lengths.max())
    sizes = {"layer": w.n_layers, "head": w.n_heads, "pos": n_pos}
    values = {site: torch.zeros(*(sizes[d] for d in dims), n) for site, dims in ATTRIBUTION_SITES.items()}
    finals = {"base": torch.zeros(n, w.W_U.shape[0]), "source": torch.zeros(n, w.W_U.shape[0])}
    groups = []
    for index in pairs.length_groups():
        group = pairs.select(index)
        clean_tokens, corrupted_tokens = group.clean_tokens.to(device), group.corrupted_tokens.to(device)
        base_tokens, source_tokens = (
            (corrupted_tokens, clean_tokens) if direction == "denoising" else (clean_tokens, corrupted_tokens)
        )
        source = run_with_cache(w, source_tokens)
        finals["source"][index] = source.final_logits.float().cpu()
        if (
            direction == "noising"
        ):  # the base run is the clean one, which the metric needs before any backward
            with torch.no_grad():
                finals["base"][index] = forward_logits(w, base_tokens)[:, -1].float().cpu()
        groups.append((index, base_tokens, source))
    clean_final, corrupted_final = (
        (finals["source"], finals["base"]) if direction == "denoising" else (finals["base"], finals["source"])
    )
    metric_fn = (
        metric if isinstance(metric, Metric) else make_metric(metric, pairs.answer, pairs.wrong, clean_final)
    )
    for index, base_tokens, source in groups:
        with torch.enable_grad():
            logits, acts = _base_run_with_grad(w, base_tokens)
            if direction == "denoising":  # the corrupted baseline comes from this same run
                finals["base"][index] = logits.detach().float().cpu()
            _accumulate(w, metric_fn, logits, acts, source, index, values)
    everyone = torch.arange(n)
    clean_value = metric_fn(clean_final, everyone).mean().item()
    corrupted_value = metric_fn(corrupted_final, everyone).mean().item()
    return {
        site: PatchResult(
            site=f"attrib_{site}",
            dims=dims,
            values=values[site].mean(-1) if reduce == "mean" else values[site],
            clean=clean_value,
            corrupted=corrupted_value,
            metric=metric_fn.kind,
            direction=direction,
            per_prompt=reduce == "none",
            extra={"estimate_of": "patched metric - base metric"},
        )
        for site, dims in ATTRIBUTION_SITES.items()
    }


def _accumulate(w, metric_fn, logits, acts, source, index, values) -> None:
    group_pos = acts["resid_pre"][0].shape[1]
    total = metric_fn(logits, index).sum()  # prompts are independent: d(sum)/d(act of prompt i) is theirs
    names = ["resid_pre", "z", "attn_out", "mlp_out"]
    flat = [t for name in names for t in acts[name]]
    grads = dict(zip(range(len(flat)), torch.autograd.grad(total, flat), strict=True))
    L = w.n_layers
    for layer in range(L):
        g_resid, g_z, g_attn, g_mlp = (grads[i * L + layer] for i in range(4))
        d_resid = source.resid_pre[layer] - acts["resid_pre"][layer].detach()
        d_z = source.z[layer] - acts["z"][layer].detach()
        d_attn = source.attn_out[layer] - acts["attn_out"][layer].detach()
        d_mlp = source.mlp_out[layer] - acts["mlp_out"][layer].detach()
        by_pos = {
            "resid_pre": einops.reduce(d_resid * g_resid, "b p m -> p b", "sum"),
            "attn_out": einops.reduce(d_attn * g_attn, "b p m -> p b", "sum"),
            "mlp_out": einops.reduce(d_mlp * g_mlp, "b p m -> p b", "sum"),
        }
        head_pos = einops.reduce(d_z * g_z, "b p h d -> h p b", "sum").float().cpu()
        for site, v in by_pos.items():
            values[site][layer, :group_pos][:, index] = v.float().cpu()
        values["head_out_by_pos"][layer][:, :group_pos][:, :, index] = head_pos
        values["head_out"][layer][:, index] = head_pos.sum(1)


def agreement(estimate: Float[Tensor, " *dims"], exact_effect: Float[Tensor, " *dims"]) -> dict[str, float]:
    """Pearson and Spearman correlation between attribution estimates and exact effects."""
    a, b = estimate.flatten().double(), exact_effect.flatten().double()

    def pearson(x: Tensor, y: Tensor) -> float:
        x, y = x - x.mean(), y - y.mean()
        return float((x * y).sum() / (x.norm() * y.norm()))

    def ranks(x: Tensor) -> Tensor:
        return x.argsort().argsort().double()

    return {"pearson": pearson(a, b), "spearman": pearson(ranks(a), ranks(b)), "n": int(a.numel())}
