"""A functional Phi forward pass over the loaded model's weights, resumable at any layer and position.

Activation patching at (layer L, position p) leaves every earlier layer and every earlier position
untouched (attention is causal). This module lets the patching engine start a forward pass at
layer L from a given residual stream for positions `p..end`, reusing the base run's rotated keys
and values for positions `< p`, and stop the last layer at the final position. It mirrors Hugging
Face's `PhiForCausalLM` (eager attention, softmax in float32) and is tested equal to the bridge.

Per block (Phi runs attention and MLP in parallel from one LayerNorm):
    h = LN(x);  x_out = x + Attn(h) + MLP(h)
"""

from __future__ import annotations

from dataclasses import dataclass

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.model.loading import HookedPhi


@dataclass
class PhiWeights:
    """The model's weights in TransformerLens's per-head layout (views, not copies, where possible)."""

    W_E: Float[Tensor, "d_vocab d_model"]
    ln_w: list[Tensor]
    ln_b: list[Tensor]
    W_QKV: list[
        Float[Tensor, "qkv d_model"]
    ]  # q, k, v stacked as Hugging Face's Linear weights (3 * head * d_head rows)
    b_QKV: list[Float[Tensor, " qkv"]]
    W_O: list[Float[Tensor, "head d_head d_model"]]
    b_O: list[Float[Tensor, " d_model"]]
    W_in: list[Float[Tensor, "d_mlp d_model"]]
    b_in: list[Float[Tensor, " d_mlp"]]
    W_out: list[Float[Tensor, "d_model d_mlp"]]
    b_out: list[Float[Tensor, " d_model"]]
    ln_f_w: Tensor
    ln_f_b: Tensor
    W_U: Float[Tensor, "d_vocab d_model"]
    b_U: Float[Tensor, " d_vocab"] | None
    n_heads: int
    d_head: int
    rotary_dim: int
    rope_theta: float
    eps: float
    act: str

    @property
    def n_layers(self) -> int:
        return len(self.ln_w)

    @classmethod
    def from_model(cls, model: HookedPhi) -> PhiWeights:
        """The weights of a loaded model (no copies except the fused q/k/v matrix)."""
        hf = model.original_model
        layers = hf.model.layers
        attn0 = layers[0].self_attn
        rope = hf.config.rope_parameters
        return cls(
            W_E=hf.model.embed_tokens.weight,
            ln_w=[layer.input_layernorm.weight for layer in layers],
            ln_b=[layer.input_layernorm.bias for layer in layers],
            W_QKV=[
                torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
                for a in (layer.self_attn for layer in layers)
            ],
            b_QKV=[
                torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])
                for a in (layer.self_attn for layer in layers)
            ],
            W_O=[
                einops.rearrange(
                    layer.self_attn.dense.weight, "m (h d) -> h d m", h=hf.config.num_attention_heads
                )
                for layer in layers
            ],
            b_O=[layer.self_attn.dense.bias for layer in layers],
            W_in=[layer.mlp.fc1.weight for layer in layers],
            b_in=[layer.mlp.fc1.bias for layer in layers],
            W_out=[layer.mlp.fc2.weight for layer in layers],
            b_out=[layer.mlp.fc2.bias for layer in layers],
            ln_f_w=hf.model.final_layernorm.weight,
            ln_f_b=hf.model.final_layernorm.bias,
            W_U=hf.lm_head.weight,
            b_U=hf.lm_head.bias,
            n_heads=hf.config.num_attention_heads,
            d_head=attn0.head_dim,
            rotary_dim=attn0.rotary_ndims,
            rope_theta=float(rope["rope_theta"]),
            eps=hf.config.layer_norm_eps,
            act=hf.config.hidden_act,
        )

    def rotary(self, positions: Int[Tensor, "*batch pos"], dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """cos, sin of shape [*batch, pos, rotary_dim], as Hugging Face's default rotary embedding."""
        dim = self.rotary_dim
        inv_freq = 1.0 / (self.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        freqs = positions.float()[..., None] * inv_freq.to(positions.device)
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def layer_norm(x: Tensor, w: Tensor, b: Tensor, eps: float) -> Tensor:
    """LayerNorm over the last axis with weight `w`, bias `b`."""
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)


def gelu(x: Tensor, act: str) -> Tensor:
    if act == "gelu_new":
        return torch.nn.functional.gelu(x, approximate="tanh")
    if act == "gelu":
        return torch.nn.functional.gelu(x)
    raise ValueError(f"unsupported activation {act!r}")


def rotate(x: Tensor, cos: Tensor, sin: Tensor, rotary_dim: int) -> Tensor:
    """Partial rotary on the first `rotary_dim` dims of `x` [batch, head, pos, d_head]."""
    x_rot, x_pass = x[..., :rotary_dim], x[..., rotary_dim:]
    half = rotary_dim // 2
    rotated = torch.cat([-x_rot[..., half:], x_rot[..., :half]], dim=-1)
    return torch.cat([x_rot * cos + rotated * sin, x_pass], dim=-1)


@dataclass
class BlockOut:
    """What one block computed: outputs for the query positions, keys/values for all new positions."""

    resid_post: Float[Tensor, "*batch dest_pos d_model"]
    k: Float[Tensor, "*batch head pos d_head"]  # rotated keys of the new positions
    v: Float[Tensor, "*batch head pos d_head"]
    z: Float[Tensor, "*batch dest_pos head d_head"] | None = None
    attn_out: Float[Tensor, "*batch dest_pos d_model"] | None = None
    mlp_out: Float[Tensor, "*batch dest_pos d_model"] | None = None
    q: Float[Tensor, "*batch head pos d_head"] | None = None  # rotated queries (from query_from on)
    pattern: Float[Tensor, "*batch head dest_pos src_pos"] | None = None


def qkv(
    w: PhiWeights, layer: int, h: Float[Tensor, "... pos d_model"], cos: Tensor, sin: Tensor, q_from: int = 0
):
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
    q = rotate(q, cos[q_from:], sin[q_from:], w.rotary_dim)
    return q, rotate(k, cos, sin, w.rotary_dim), v


def attend(
    q: Float[Tensor, "... head dest_pos d_head"],
    k: Float[Tensor, "... head src_pos d_head"],
    v: Float[Tensor, "... head src_pos d_head"],
    q_start: int,
    k_prefix: Tensor | None = None,
    v_prefix: Tensor | None = None,
    key_valid: Tensor | None = None,  # bool [batch, prefix + src positions]
) -> tuple[Tensor, Tensor]:
    """Causal attention; query i sits at absolute position q_start + i. Returns (z, pattern).

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
    pattern = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    z = torch.matmul(pattern[..., n_prefix:], v)
    if v_prefix is not None:
        z = z + torch.matmul(pattern[..., :n_prefix], v_prefix)
    return einops.rearrange(z, "... h p d -> ... p h d"), pattern


def mask_scores(
    scores: Float[Tensor, "... head dest_pos src_pos"], q_start: int, key_valid: Tensor | None = None
) -> Tensor:
    """Scores with what no query may see set to the dtype's minimum: later keys (query i sits at
    absolute position q_start + i, key j at j) and, for a left-padded batch, the padding
    (`key_valid`: bool [batch, src_pos])."""
    q_pos = torch.arange(q_start, q_start + scores.shape[-2], device=scores.device)
    k_pos = torch.arange(scores.shape[-1], device=scores.device)
    scores = scores.masked_fill(k_pos[None, :] > q_pos[:, None], torch.finfo(scores.dtype).min)
    if key_valid is not None:
        scores = scores.masked_fill(~key_valid[:, None, None, :], torch.finfo(scores.dtype).min)
    return scores


def head_out(w: PhiWeights, layer: int, z: Float[Tensor, "... pos head d_head"]) -> Tensor:
    """Sum of heads' writes plus the output bias: [..., pos, d_model]."""
    flat = einops.rearrange(z, "... p h d -> ... p (h d)")
    W = einops.rearrange(w.W_O[layer], "h d m -> m (h d)")
    return torch.nn.functional.linear(flat, W, w.b_O[layer])


def mlp(w: PhiWeights, layer: int, h: Tensor) -> Tensor:
    """Block `layer`'s MLP on the LayerNorm output `h` (gelu_new, biases included)."""
    hidden = gelu(torch.nn.functional.linear(h, w.W_in[layer], w.b_in[layer]), w.act)
    return torch.nn.functional.linear(hidden, w.W_out[layer], w.b_out[layer])


def block(
    w: PhiWeights,
    layer: int,
    x: Float[Tensor, "... pos d_model"],
    start: int,
    k_prefix: Tensor | None = None,
    v_prefix: Tensor | None = None,
    query_from: int | None = None,
    keep: bool = False,
) -> BlockOut:
    """Run block `layer` on positions `start .. start+pos` given the keys/values of positions `< start`.

    `query_from` (absolute position): compute outputs only from there on (keys/values for all).
    `keep`: also return q, z, pattern, attn_out and mlp_out.
    """
    n = x.shape[-2]
    positions = torch.arange(start, start + n, device=x.device)
    cos, sin = w.rotary(positions, x.dtype)
    h = layer_norm(x, w.ln_w[layer], w.ln_b[layer], w.eps)
    offset = 0 if query_from is None else query_from - start
    q, k, v = qkv(w, layer, h, cos, sin, offset)
    z, pattern = attend(q, k, v, start + offset, k_prefix, v_prefix)
    attn_out = head_out(w, layer, z)
    mlp_out = mlp(w, layer, h[..., offset:, :])
    resid_post = x[..., offset:, :] + attn_out + mlp_out
    if not keep:
        return BlockOut(resid_post, k, v)
    return BlockOut(resid_post, k, v, z, attn_out, mlp_out, q, pattern)


def unembed(w: PhiWeights, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
    """Final LayerNorm and unembedding (with its bias) of residual vectors."""
    return torch.nn.functional.linear(layer_norm(x, w.ln_f_w, w.ln_f_b, w.eps), w.W_U, w.b_U)


@dataclass
class RunCache:
    """A full run's activations, per layer: what the patching engine reuses and patches in."""

    resid_pre: list[Float[Tensor, "batch pos d_model"]]
    k: list[Float[Tensor, "batch head pos d_head"]]
    v: list[Float[Tensor, "batch head pos d_head"]]
    q: list[Float[Tensor, "batch head pos d_head"]]
    z: list[Float[Tensor, "batch pos head d_head"]]
    pattern: list[Float[Tensor, "batch head dest_pos src_pos"]]
    attn_out: list[Float[Tensor, "batch pos d_model"]]
    mlp_out: list[Float[Tensor, "batch pos d_model"]]
    resid_final: Float[Tensor, "batch pos d_model"]
    final_logits: Float[Tensor, "batch d_vocab"]


def run_with_cache(w: PhiWeights, tokens: Int[Tensor, "batch pos"], *, grad: bool = False) -> RunCache:
    """A whole forward pass (all prompts the same length), keeping everything patching needs.

    `grad=True` records the autograd graph: the embedding output is a leaf that requires grad, so
    every cached activation is a graph node that `torch.autograd.grad` can differentiate against.
    """
    with torch.set_grad_enabled(grad):
        x = w.W_E[tokens]
        if grad:
            x = x.detach().requires_grad_(True)
        cache = RunCache([], [], [], [], [], [], [], [], x, x[:, -1])
        for layer in range(w.n_layers):
            cache.resid_pre.append(x)
            out = block(w, layer, x, 0, keep=True)
            for name in ("k", "v", "q", "z", "pattern", "attn_out", "mlp_out"):
                getattr(cache, name).append(getattr(out, name))
            x = out.resid_post
        cache.resid_final = x
        cache.final_logits = unembed(w, x[:, -1])
    return cache


@torch.no_grad()
def run_final_logits(w: PhiWeights, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch d_vocab"]:
    """Final-position logits only (the last block runs at the final position alone)."""
    x = w.W_E[tokens]
    n_pos = tokens.shape[1]
    for layer in range(w.n_layers):
        last = layer == w.n_layers - 1
        x = block(w, layer, x, 0, query_from=n_pos - 1 if last else None).resid_post
    return unembed(w, x[:, -1])


def forward_logits(w: PhiWeights, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_vocab"]:
    """All-position logits: the plain forward pass, equal to the bridge's logits (tested)."""
    x = w.W_E[tokens]
    for layer in range(w.n_layers):
        x = block(w, layer, x, 0).resid_post
    return unembed(w, x)
