"""Fold LayerNorms and centre writing weights of a Hugging Face Phi model, in place.

This is TransformerLens's weight processing (`fold_ln`, `center_writing_weights`,
`center_unembed`, `fold_value_biases`), rewritten to touch one tensor at a time so that
folding full-size Phi-2 needs no second copy of the weights: transformer-lens's
`enable_compatibility_mode()` clones the whole state dict and runs out of memory on 24 GB.

What each step does, and why the model's log-probabilities do not change:

- fold_ln: a LayerNorm is `w * (x - mean) / std + b`. Its `w` is multiplied into the weights
  that read it and `W @ b` is added to their biases; the LayerNorm keeps only centring and
  scaling (`w = 1`, `b = 0`). In Phi one LayerNorm per block feeds q, k, v *and* the MLP's fc1.
  The reading weights are then centred over `d_model`, which changes nothing because the
  normalised input has zero mean.
- center_writing_weights: every weight that writes to the residual stream (embedding,
  attention `dense`, MLP `fc2`) and its bias has its mean over `d_model` removed. Each
  reader of the residual stream starts with a LayerNorm, which removes that mean anyway.
- fold_value_biases: the value bias of each head contributes `b_V @ W_O` at every position
  whatever the attention pattern (its rows sum to one), so it moves into the output bias.
- center_unembed: subtracting the same amount from every logit leaves softmax unchanged.

Arithmetic runs in float32 whatever the model's dtype, one tensor at a time.
"""

from __future__ import annotations

import torch
from torch import nn


def _fp32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32)


def _assign(param: nn.Parameter | torch.Tensor, value: torch.Tensor) -> None:
    param.data.copy_(value.to(param.dtype))


def _fold_layernorm_into(ln: nn.LayerNorm, readers: list[nn.Linear]) -> None:
    """Fold `ln`'s affine part into each reader (nn.Linear, weight [out, in]) and centre it."""
    w, b = _fp32(ln.weight), _fp32(ln.bias)
    for lin in readers:
        weight = _fp32(lin.weight)
        bias = _fp32(lin.bias) if lin.bias is not None else None
        folded_bias = weight @ b
        weight.mul_(w[None, :])
        weight.sub_(weight.mean(dim=1, keepdim=True))
        _assign(lin.weight, weight)
        if bias is not None:
            _assign(lin.bias, bias + folded_bias)
        elif folded_bias.abs().max() > 0:
            lin.bias = nn.Parameter((folded_bias).to(lin.weight.dtype))
        del weight
    ln.weight.data.fill_(1.0)
    ln.bias.data.zero_()


def _centre_writer(lin: nn.Linear) -> None:
    """Remove the mean over d_model (the output axis) from a residual writer and its bias."""
    weight = _fp32(lin.weight)
    weight.sub_(weight.mean(dim=0, keepdim=True))
    _assign(lin.weight, weight)
    if lin.bias is not None:
        bias = _fp32(lin.bias)
        _assign(lin.bias, bias - bias.mean())


def _fold_value_bias(v_proj: nn.Linear, dense: nn.Linear) -> None:
    if v_proj.bias is None:
        return
    extra = _fp32(dense.weight) @ _fp32(v_proj.bias)  # [d_model]
    if dense.bias is None:
        dense.bias = nn.Parameter(extra.to(dense.weight.dtype))
    else:
        _assign(dense.bias, _fp32(dense.bias) + extra)
    v_proj.bias.data.zero_()


@torch.no_grad()
def fold_phi_weights(model: nn.Module) -> None:
    """Apply fold_ln, centre writing weights, fold value biases and centre the unembedding.

    `model` is a `transformers.PhiForCausalLM`; it is modified in place.
    """
    inner = model.model
    embed = _fp32(inner.embed_tokens.weight)  # [d_vocab, d_model]
    embed.sub_(embed.mean(dim=1, keepdim=True))
    _assign(inner.embed_tokens.weight, embed)
    del embed
    for layer in inner.layers:
        attn, mlp = layer.self_attn, layer.mlp
        _fold_layernorm_into(layer.input_layernorm, [attn.q_proj, attn.k_proj, attn.v_proj, mlp.fc1])
        _fold_value_bias(attn.v_proj, attn.dense)
        _centre_writer(attn.dense)
        _centre_writer(mlp.fc2)
    _fold_layernorm_into(inner.final_layernorm, [model.lm_head])
    unembed = _fp32(model.lm_head.weight)  # [d_vocab, d_model]
    unembed.sub_(unembed.mean(dim=0, keepdim=True))
    _assign(model.lm_head.weight, unembed)
    del unembed
    if model.lm_head.bias is not None:
        bias = _fp32(model.lm_head.bias)
        _assign(model.lm_head.bias, bias - bias.mean())
