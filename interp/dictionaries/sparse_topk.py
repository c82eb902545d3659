"""TopK training with sparse backward passes: the same losses and gradients as the dense path, less work.

A TopK dictionary's training step in dense form multiplies `[token, d_sae]` matrices five times
(encode, decode, and three in the backward pass), though only `k` of `d_sae` latents per token are
nonzero. Here (after eai-sparsify's fused encoder and embedding-bag decoder):

- the pre-activations `pre = x @ W_enc + b_enc` are computed once, without autograd (the one dense
  product a step needs);
- `select(x, W_enc, b_enc, pre, indices)` gathers `relu(pre)` at each token's chosen latents, and
  its backward pass sends gradients only to those latents' encoder columns and biases
  (`index_add_`) and to `x` (an embedding bag over the encoder's chosen columns);
- decoding is an embedding bag: `sum_i acts_i * W_dec[i]`, whose gradient reaches only the chosen
  decoder rows.

The AuxK term selects among dead latents from the same `pre` and goes through the same two pieces,
so its gradients reach the dead latents' encoder columns and decoder rows, as in the dense path.
`tests/dictionaries/test_sparse_topk.py` holds the losses and every gradient to the dense path's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor


class _Select(torch.autograd.Function):
    """`relu(pre).gather(-1, indices)`, with `pre = x @ W_enc + b_enc` given (computed without autograd)."""

    @staticmethod
    def forward(ctx, x: Tensor, W_enc: Tensor, b_enc: Tensor, pre: Tensor, indices: Tensor) -> Tensor:
        values = pre.gather(-1, indices).relu()
        ctx.save_for_backward(x, W_enc, indices, values > 0)
        return values

    @staticmethod
    def backward(ctx, grad_values: Tensor):
        x, W_enc, indices, positive = ctx.saved_tensors
        grad = grad_values * positive  # relu's derivative
        grad_x = grad_W_enc = grad_b_enc = None
        flat = indices.flatten()
        if ctx.needs_input_grad[0]:
            grad_x = F.embedding_bag(indices, W_enc.T.contiguous(), per_sample_weights=grad, mode="sum")
        if ctx.needs_input_grad[1]:
            rows = (grad[..., None] * x[:, None, :]).flatten(0, 1)  # [token * k, d_in]
            grad_W_enc = torch.zeros(W_enc.shape[1], W_enc.shape[0], dtype=W_enc.dtype, device=W_enc.device)
            grad_W_enc = grad_W_enc.index_add_(0, flat, rows).T
        if ctx.needs_input_grad[2]:
            grad_b_enc = torch.zeros(W_enc.shape[1], dtype=grad.dtype, device=grad.device)
            grad_b_enc = grad_b_enc.index_add_(0, flat, grad.flatten())
        return grad_x, grad_W_enc, grad_b_enc, None, None


def select(
    x: Float[Tensor, "token d_in"],
    W_enc: Float[Tensor, "d_in d_sae"],
    b_enc: Float[Tensor, " d_sae"],
    pre: Float[Tensor, "token d_sae"],
    indices: Int[Tensor, "token k"],
) -> Float[Tensor, "token k"]:
    """The chosen latents' activations `relu(pre)[token, indices]`, differentiable in x, W_enc, b_enc."""
    return _Select.apply(x, W_enc, b_enc, pre, indices)


def decode_sparse(
    values: Float[Tensor, "token k"], indices: Int[Tensor, "token k"], W_dec: Float[Tensor, "d_sae d_out"]
) -> Float[Tensor, "token d_out"]:
    """`sum_j values[:, j] * W_dec[indices[:, j]]` (no bias)."""
    return F.embedding_bag(indices, W_dec, per_sample_weights=values, mode="sum")


def dense(
    values: Float[Tensor, "token k"], indices: Int[Tensor, "token k"], d_sae: int
) -> Float[Tensor, "token d_sae"]:
    """The latent activations as a dense `[token, d_sae]` tensor (no gradient)."""
    return torch.zeros(values.shape[0], d_sae, dtype=values.dtype, device=values.device).scatter_(
        -1, indices, values.detach()
    )
