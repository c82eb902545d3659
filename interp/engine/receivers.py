"""The Phi forward with one input per receiver: what circuit evaluation intervenes on.

In a normal forward every head's q, k and v and the block's MLP read the same residual stream. Here
each receiver of layer L (the q, k and v input of every head, then the MLP; `3 * head + 1` of them)
gets its own copy of that input, `inputs[:, r]` of shape `batch receiver pos d_model`, chosen by a
callback. Each copy goes through its own LayerNorm (Phi's one LayerNorm per block is recomputed per
receiver input, so an edge changes only what that receiver sees). With every copy equal to the
residual stream this is exactly `interp.engine.forward` (tested), so:

- circuit evaluation builds each copy from the senders the circuit keeps and ablated values for the
  rest, with the senders' outputs taken from this same forward;
- with a leaf per copy, autograd gives each receiver input's gradient directly: the slow reference that
  `interp.engine.receiver_gradients` (EAP, EAP-IG) is tested equal to.
"""

from __future__ import annotations

from collections.abc import Callable

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from interp.engine.forward import PhiWeights, attend, layer_norm, mlp, rotate, unembed

# inputs(layer, resid, outputs) -> the receivers' inputs of `layer` ([batch receiver pos d_model]);
# `resid` is the true residual stream entering the layer, `outputs` the sender outputs so far
# (input, then each layer's heads and MLP), each [batch pos d_model]. layer == n_layers: the logits.
InputsFn = Callable[[int, Tensor, list[Tensor]], Tensor]


def receiver_block(
    w: PhiWeights, layer: int, inputs: Float[Tensor, "batch receiver pos d_model"]
) -> tuple[Float[Tensor, "head batch pos d_model"], Float[Tensor, "batch pos d_model"]]:
    """Block `layer` from per-receiver inputs: each head's output (`z @ W_O`, no bias) and the MLP output."""
    H = w.n_heads
    n_pos = inputs.shape[2]
    h = layer_norm(inputs, w.ln_w[layer], w.ln_b[layer], w.eps)  # one LayerNorm per receiver input
    W = einops.rearrange(
        w.W_QKV[layer], "(part head d_head) d_model -> part head d_head d_model", part=3, head=H
    )
    b = einops.rearrange(w.b_QKV[layer], "(part head d_head) -> part head d_head", part=3, head=H)
    q, k, v = (
        einops.einsum(
            h[:, i * H : (i + 1) * H],
            W[i],
            "batch head pos d_model, head d_head d_model -> batch head pos d_head",
        )
        + b[i][None, :, None, :]
        for i in range(3)
    )
    cos, sin = w.rotary(torch.arange(n_pos, device=inputs.device), inputs.dtype)
    q, k = rotate(q, cos, sin, w.rotary_dim), rotate(k, cos, sin, w.rotary_dim)
    z, _ = attend(q, k, v, 0)  # batch pos head d_head
    heads = einops.einsum(
        z, w.W_O[layer], "batch pos head d_head, head d_head d_model -> head batch pos d_model"
    )
    return heads, mlp(w, layer, h[:, 3 * H])


# replace(layer, heads, mlp_out) -> (heads, mlp_out): what layer `layer` writes, e.g. an interpolation
ReplaceFn = Callable[[int, Tensor, Tensor], tuple[Tensor, Tensor]]


def run_receivers(
    w: PhiWeights,
    embed: Float[Tensor, "batch pos d_model"],
    inputs: InputsFn,
    replace: ReplaceFn | None = None,
) -> tuple[Float[Tensor, "batch d_vocab"], list[Tensor], list[Tensor]]:
    """Final-position logits, every layer's receiver inputs (the logits' last: [batch 1 pos d_model]) and
    every sender's output (the embedding, then each layer's heads and MLP: [batch pos d_model] each).

    `replace` may substitute what a layer writes (its heads' outputs and its MLP's) before later layers
    read it; the receivers of that layer still see their own inputs."""
    resid = embed
    outputs = [embed]
    used = []
    for layer in range(w.n_layers):
        x = inputs(layer, resid, outputs)
        used.append(x)
        heads, mlp_out = receiver_block(w, layer, x)
        if replace is not None:
            heads, mlp_out = replace(layer, heads, mlp_out)
        outputs += list(heads.unbind(0)) + [mlp_out]
        resid = resid + heads.sum(0) + w.b_O[layer] + mlp_out
    final = inputs(w.n_layers, resid, outputs)
    used.append(final)
    return unembed(w, final[:, 0, -1]), used, outputs


def n_receivers(w: PhiWeights, layer: int) -> int:
    """Receivers of `layer`: q, k and v of every head and the MLP; one (the logits) at `n_layers`."""
    return 1 if layer == w.n_layers else 3 * w.n_heads + 1


def copies(w: PhiWeights) -> InputsFn:
    """The plain forward: every receiver of a layer reads the residual stream (a copy per receiver)."""

    def inputs(layer: int, resid: Tensor, outputs: list[Tensor]) -> Tensor:
        return einops.repeat(
            resid, "batch pos d_model -> batch receiver pos d_model", receiver=n_receivers(w, layer)
        ).clone()

    return inputs
