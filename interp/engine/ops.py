"""The operations a Phi block is made of (LayerNorm, gelu_new, partial rotary, the q/k/v projection,
causal attention, the heads' output projection, the MLP, the unembedding), each written once.

`attend` is the one place attention scores become probabilities: every forward in `interp.engine`
(the block body, its edit path, one-head recomputations) calls it, and its `at` argument is where the
scores and pattern edit points (`attn.hook_attn_scores`, `attn.hook_pattern`) are applied.
"""

from __future__ import annotations

from collections.abc import Callable

import einops
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.engine.weights import PhiWeights

# cos / sin of the rotary embedding: [pos rotary_dim], or [batch 1 pos rotary_dim] with per-row positions
Rotary = Float[Tensor, " ..."]
# keys / values of earlier positions ([... head prefix d_head]; broadcast against the queries' leading axes)
Prefix = Float[Tensor, " ..."]
# bool [batch, every key position]: False at a left-padded batch's padding
KeyValid = Bool[Tensor, " ..."]
# at(point, tensor) -> tensor: a block's edits at a short hook name (see interp.engine.edits)
AtFn = Callable[[str, Tensor], Tensor]


def layer_norm(
    x: Float[Tensor, "... d_model"], w: Float[Tensor, " d_model"], b: Float[Tensor, " d_model"], eps: float
) -> Float[Tensor, "... d_model"]:
    """LayerNorm over the last axis with weight `w`, bias `b`."""
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)


def gelu(x: Float[Tensor, "... d_mlp"], act: str) -> Float[Tensor, "... d_mlp"]:
    """The MLP's activation: gelu_new (tanh approximation, as Phi) or exact gelu."""
    if act == "gelu_new":
        return torch.nn.functional.gelu(x, approximate="tanh")
    if act == "gelu":
        return torch.nn.functional.gelu(x)
    raise ValueError(f"unsupported activation {act!r}")


def rotate(
    x: Float[Tensor, "... head pos d_head"], cos: Rotary, sin: Rotary, rotary_dim: int
) -> Float[Tensor, "... head pos d_head"]:
    """Partial rotary on the first `rotary_dim` dims of `x`; `cos`/`sin` are [pos rotary_dim] or, for
    per-row positions, [batch 1 pos rotary_dim]."""
    x_rot, x_pass = x[..., :rotary_dim], x[..., rotary_dim:]
    half = rotary_dim // 2
    rotated = torch.cat([-x_rot[..., half:], x_rot[..., :half]], dim=-1)
    return torch.cat([x_rot * cos + rotated * sin, x_pass], dim=-1)


def qkv(
    w: PhiWeights, layer: int, h: Float[Tensor, "... pos d_model"], cos: Rotary, sin: Rotary, q_from: int = 0
) -> tuple[
    Float[Tensor, "... head dest_pos d_head"],
    Float[Tensor, "... head pos d_head"],
    Float[Tensor, "... head pos d_head"],
]:
    """Rotated q, rotated k and v, each [..., head, pos, d_head]; q only from position offset `q_from`."""
    if q_from == 0:
        fused = torch.nn.functional.linear(h, w.W_QKV[layer], w.b_QKV[layer])
        q, k, v = einops.rearrange(fused, "... p (three h d) -> three ... h p d", three=3, h=w.n_heads)
        return rotate(q, cos, sin, w.rotary_dim), rotate(k, cos, sin, w.rotary_dim), v
    width = w.n_heads * w.d_head  # fused rows: q, then k, then v
    q = torch.nn.functional.linear(h[..., q_from:, :], w.W_QKV[layer][:width], w.b_QKV[layer][:width])
    kv = torch.nn.functional.linear(h, w.W_QKV[layer][width:], w.b_QKV[layer][width:])
    q = einops.rearrange(q, "... p (h d) -> ... h p d", h=w.n_heads)
    k, v = einops.rearrange(kv, "... p (two h d) -> two ... h p d", two=2, h=w.n_heads)
    q = rotate(q, cos[..., q_from:, :], sin[..., q_from:, :], w.rotary_dim)
    return q, rotate(k, cos, sin, w.rotary_dim), v


def attend(
    q: Float[Tensor, "... head dest_pos d_head"],
    k: Float[Tensor, "... head pos d_head"],
    v: Float[Tensor, "... head pos d_head"],
    q_start: int,
    k_prefix: Prefix | None = None,
    v_prefix: Prefix | None = None,
    key_valid: KeyValid | None = None,
    at: AtFn | None = None,
) -> tuple[Float[Tensor, "... dest_pos head d_head"], Float[Tensor, "... head dest_pos src_pos"]]:
    """Causal attention; query i sits at absolute position q_start + i. Returns (z, pattern).

    The one place scores become probabilities. `at(point, tensor)`, if given, is applied to the masked
    scores (`attn.hook_attn_scores`) and to the pattern (`attn.hook_pattern`), both [... head dest_pos
    src_pos] over every key position (prefix included), where the block's edits act.

    `k`/`v` are the keys/values of positions `len(prefix) ..`; `k_prefix`/`v_prefix` (positions
    `0 .. len(prefix)`) broadcast against the leading dims of `q`, so many patched variants of the
    same prompts share one copy of the unchanged prefix. `key_valid` (q of shape [batch head dest_pos
    d_head]) masks keys no query may see: a left-padded batch's padding.
    """
    scale = q.shape[-1] ** -0.5
    n_prefix = 0 if k_prefix is None else k_prefix.shape[-2]
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if k_prefix is not None:
        prefix_scores = torch.matmul(q, k_prefix.transpose(-1, -2)) * scale
        scores = torch.cat([prefix_scores, scores], dim=-1)
    scores = mask_scores(scores, q_start, key_valid)
    if at is not None:
        scores = at("attn.hook_attn_scores", scores)
    pattern = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    if at is not None:
        pattern = at("attn.hook_pattern", pattern)
    z = torch.matmul(pattern[..., n_prefix:], v)
    if v_prefix is not None:
        z = z + torch.matmul(pattern[..., :n_prefix], v_prefix)
    return einops.rearrange(z, "... h p d -> ... p h d"), pattern


def mask_scores(
    scores: Float[Tensor, "... head dest_pos src_pos"],
    q_start: int,
    key_valid: KeyValid | None = None,
) -> Float[Tensor, "... head dest_pos src_pos"]:
    """Scores with what no query may see set to the dtype's minimum: later keys (query i sits at
    absolute position q_start + i, key j at j) and, for a left-padded batch, the padding
    (`key_valid`: bool [batch, src_pos])."""
    q_pos = torch.arange(q_start, q_start + scores.shape[-2], device=scores.device)
    k_pos = torch.arange(scores.shape[-1], device=scores.device)
    scores = scores.masked_fill(k_pos[None, :] > q_pos[:, None], torch.finfo(scores.dtype).min)
    if key_valid is not None:
        scores = scores.masked_fill(~key_valid[:, None, None, :], torch.finfo(scores.dtype).min)
    return scores


def head_out(
    w: PhiWeights, layer: int, z: Float[Tensor, "... pos head d_head"]
) -> Float[Tensor, "... pos d_model"]:
    """Sum of heads' writes plus the output bias: [..., pos, d_model]."""
    flat = einops.rearrange(z, "... p h d -> ... p (h d)")
    W = einops.rearrange(w.W_O[layer], "h d m -> m (h d)")
    return torch.nn.functional.linear(flat, W, w.b_O[layer])


def mlp(w: PhiWeights, layer: int, h: Float[Tensor, "... pos d_model"]) -> Float[Tensor, "... pos d_model"]:
    """Block `layer`'s MLP on the LayerNorm output `h` (gelu_new, biases included)."""
    hidden = gelu(torch.nn.functional.linear(h, w.W_in[layer], w.b_in[layer]), w.act)
    return torch.nn.functional.linear(hidden, w.W_out[layer], w.b_out[layer])


def unembed(w: PhiWeights, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
    """Final LayerNorm and unembedding (with its bias) of residual vectors."""
    return torch.nn.functional.linear(layer_norm(x, w.ln_f_w, w.ln_f_b, w.eps), w.W_U, w.b_U)
