"""Path patching (Wang et al. 2022): the effect of senders on the output *through* chosen receivers.

Activation patching a head measures its total effect, through every path. Path patching isolates
the paths from sender heads to receivers (heads' query/key/value inputs, or the logits):

1. Run the base prompts with every attention head frozen to its base-run output, except the
   senders, which take their source-run output. MLPs are recomputed, so paths sender -> MLP ->
   receiver count as in the original paper; paths through other heads do not.
2. Receivers = logits: the metric of that run is the answer. Receivers = heads: read their q (or
   k, or v) from that run, then run the base prompts again normally with only those receiver
   inputs replaced, and measure the metric.

This is exact (two real forward passes per sender set), not the gradient approximation. With
`senders=None` every head below the earliest receiver is tried alone as the sender, many per
forward pass; heads that cannot send (at or after a receiver's layer) get 0 and `valid = False`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from interp.forward import PhiWeights, RunCache, attend, head_out, layer_norm, mlp, qkv, unembed
from interp.metrics import MetricKind, make_metric
from interp.patching import PatchResult, prepare_runs
from interp.prompts import PromptPairs

Head = tuple[int, int]


def _sender_mask(w: PhiWeights, senders: list[list[Head]], layer: int, device) -> Tensor:
    """[n_sets, head] True where that head of `layer` is a sender in that set."""
    mask = torch.zeros(len(senders), w.n_heads, dtype=torch.bool, device=device)
    for i, heads in enumerate(senders):
        for sender_layer, head in heads:
            if sender_layer == layer:
                mask[i, head] = True
    return mask


def _frozen_run(w: PhiWeights, base: RunCache, source: RunCache, senders: list[list[Head]]) -> list[Tensor]:
    """Residual stream entering each layer (and the final one) with heads frozen but the senders."""
    x = base.resid_pre[0].expand(len(senders), *base.resid_pre[0].shape)
    residuals = []
    for layer in range(w.n_layers):
        residuals.append(x)
        mask = _sender_mask(w, senders, layer, x.device)[:, None, None, :, None]  # set batch pos head d
        z = torch.where(mask, source.z[layer], base.z[layer])
        h = layer_norm(x, w.ln_w[layer], w.ln_b[layer], w.eps)
        x = x + head_out(w, layer, z) + mlp(w, layer, h)
    residuals.append(x)
    return residuals


def _receiver_run(
    w: PhiWeights, base: RunCache, frozen: list[Tensor], receivers: list[Head], part: Literal["q", "k", "v"]
) -> Tensor:
    """Final-position residual of the base run with receivers' `part` taken from the frozen run."""
    n_sets = frozen[0].shape[0]
    n_pos = base.resid_pre[0].shape[1]
    positions = torch.arange(n_pos, device=frozen[0].device)
    x = base.resid_pre[0].expand(n_sets, *base.resid_pre[0].shape)
    index = {"q": 0, "k": 1, "v": 2}[part]
    for layer in range(w.n_layers):
        cos, sin = w.rotary(positions, x.dtype)
        h = layer_norm(x, w.ln_w[layer], w.ln_b[layer], w.eps)
        q, k, v = qkv(w, layer, h, cos, sin)
        heads = [head for receiver_layer, head in receivers if receiver_layer == layer]
        if heads:
            patched = qkv(w, layer, layer_norm(frozen[layer], w.ln_w[layer], w.ln_b[layer], w.eps), cos, sin)[
                index
            ]
            parts = [q, k, v]
            parts[index] = parts[index].clone()
            parts[index][:, :, heads] = patched[:, :, heads]
            q, k, v = parts
        z, _ = attend(q, k, v, 0)
        x = x + head_out(w, layer, z) + mlp(w, layer, h)
    return x[..., -1, :]


@torch.no_grad()
def path_patch(
    model,
    pairs: PromptPairs,
    receivers: Sequence[Head] | Literal["logits"] = "logits",
    *,
    receiver_input: Literal["q", "k", "v"] = "q",
    senders: Sequence[Head] | None = None,
    metric: MetricKind = "logit_diff",
    direction: Literal["denoising", "noising"] = "noising",
    reduce: Literal["mean", "none"] = "mean",
    max_sets_per_forward: int = 64,
) -> PatchResult:
    """Path-patching metric for `senders` as one set, or for every single head when `senders` is None.

    Default direction is noising, as in Wang et al.: base = clean prompts, senders take their
    corrupted-run outputs, and a drop in the metric shows the path matters.
    """
    w, runs, _ = prepare_runs(model, pairs, direction)
    to_logits = receivers == "logits"
    receivers = [] if to_logits else [tuple(r) for r in receivers]
    for layer, head in receivers:
        if not (0 <= layer < w.n_layers and 0 <= head < w.n_heads):
            raise ValueError(f"receiver {(layer, head)} is not a head of this model")
    first_receiver = min((layer for layer, _ in receivers), default=w.n_layers)
    if senders is None:
        sets = [[(layer, head)] for layer in range(w.n_layers) for head in range(w.n_heads)]
    else:
        late = [s for s in senders if s[0] >= first_receiver]
        if late:
            raise ValueError(f"senders {late} are not before the earliest receiver layer {first_receiver}")
        sets = [[tuple(s) for s in senders]]
    valid = torch.tensor([all(layer < first_receiver for layer, _ in s) for s in sets])
    n = len(pairs)
    clean_logits = torch.empty(n, w.W_U.shape[0])
    corrupted_logits = torch.empty(n, w.W_U.shape[0])
    for r in runs:
        clean, corrupted = (r.base, r.source) if direction == "noising" else (r.source, r.base)
        clean_logits[r.index] = clean.final_logits.float().cpu()
        corrupted_logits[r.index] = corrupted.final_logits.float().cpu()
    metric_fn = make_metric(metric, pairs.answer, pairs.wrong, clean_logits)
    values = torch.zeros(len(sets), n)
    for r in runs:
        for start in range(0, len(sets), max_sets_per_forward):
            chunk = sets[start : start + max_sets_per_forward]
            frozen = _frozen_run(w, r.base, r.source, chunk)
            final = (
                frozen[-1][..., -1, :]
                if to_logits
                else _receiver_run(w, r.base, frozen, receivers, receiver_input)
            )
            logits = unembed(w, final)  # [sets, batch, d_vocab]
            for i, row in enumerate(logits):
                values[start + i, r.index] = metric_fn(row, r.index).float().cpu()
    values[~valid] = 0.0
    everyone = torch.arange(n)
    shaped = values.view(w.n_layers, w.n_heads, n) if senders is None else values[0]
    return PatchResult(
        site="path_patch",
        dims=("layer", "head") if senders is None else (),
        values=shaped.mean(-1) if reduce == "mean" else shaped,
        clean=metric_fn(clean_logits, everyone).mean().item(),
        corrupted=metric_fn(corrupted_logits, everyone).mean().item(),
        metric=metric,
        direction=direction,
        per_prompt=reduce == "none",
        extra={
            "receivers": "logits" if to_logits else [list(r) for r in receivers],
            "receiver_input": receiver_input,
            "valid": valid.view(w.n_layers, w.n_heads) if senders is None else valid[0],
        },
    )
