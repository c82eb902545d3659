"""The Phi block, written once, with edit points by TransformerLens hook name; and the full forward.

Per block (Phi runs attention and MLP in parallel from one LayerNorm):
    h = LN(x);  x_out = x + Attn(h) + MLP(h)

`block` is the only block body in `interp`. It runs new positions `start ..` given the keys and values
of earlier positions (a resumed forward, the key/value cache), optionally computing outputs only from
`query_from` on. With no edits it runs the fused fast path (one q/k/v projection, no per-point
rearranges); with edits (`interp.engine.edits`: keep, replace, freeze, add, any `fn(tensor, site)`) it
runs step by step, each activation through its edit point (`interp.engine.hook_points`, TransformerLens
layouts), the split receiver inputs (`hook_q_input`... per head, `hook_mlp_in`) included. Edits may add
a leading variant axis; everything broadcasts over it.

Three drivers run blocks over the layers: `forward` here (the whole sequence; `run_with_cache`,
`run_final_logits`, `forward_logits` are it with fixed options), `interp.engine.batched` (many
variants resumed from a layer and position), `interp.engine.incremental` (new positions over a
key/value cache). It mirrors Hugging Face's `PhiForCausalLM` (eager attention, softmax in float32) and
is tested equal to the bridge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.engine.edits import BlockEdits, Edits, Replace, Site, apply, by_layer
from interp.engine.hook_points import ATTENTION_INSIDE, LN_INSIDE, MLP_INSIDE, is_dictionary_point
from interp.engine.ops import (
    KeyValid,
    Prefix,
    Rotary,
    attend,
    gelu,
    head_out,
    layer_norm,
    mask_scores,
    mlp,
    qkv,
    rotate,
    unembed,
)
from interp.engine.weights import PhiWeights

__all__ = [
    "BlockOut",
    "ForwardRun",
    "PhiWeights",
    "RunCache",
    "attend",
    "block",
    "final_logits",
    "forward",
    "forward_logits",
    "gelu",
    "head_out",
    "layer_norm",
    "mask_scores",
    "mlp",
    "qkv",
    "rotate",
    "run_final_logits",
    "run_with_cache",
    "unembed",
]


@dataclass
class BlockOut:
    """What one block computed: outputs for the query positions, keys/values for all new positions."""

    resid_post: Float[Tensor, "*batch dest_pos d_model"]
    k: (
        Float[Tensor, "*batch head pos d_head"] | None
    )  # rotated keys of the new positions (None: no attention)
    v: Float[Tensor, "*batch head pos d_head"] | None
    z: Float[Tensor, "*batch dest_pos head d_head"] | None = None
    attn_out: Float[Tensor, "*batch dest_pos d_model"] | None = None
    mlp_out: Float[Tensor, "*batch dest_pos d_model"] | None = None
    q: Float[Tensor, "*batch head pos d_head"] | None = None  # rotated queries (from query_from on)
    pattern: Float[Tensor, "*batch head dest_pos src_pos"] | None = None


def block(
    w: PhiWeights,
    layer: int,
    x: Float[Tensor, "... pos d_model"],
    start: int = 0,
    k_prefix: Prefix | None = None,
    v_prefix: Prefix | None = None,
    query_from: int | None = None,
    keep: bool = False,
    *,
    edits: BlockEdits | None = None,
    cos: Rotary | None = None,
    sin: Rotary | None = None,
    key_valid: KeyValid | None = None,
) -> BlockOut:
    """Run block `layer` on positions `start .. start+pos` given the keys/values of positions `< start`.

    `query_from` (absolute position): compute outputs only from there on (keys/values for all).
    `keep`: also return q, z, pattern, attn_out and mlp_out. `edits`: this block's edits by short hook
    name (`attn.hook_z`, ...). `cos`/`sin`: the rotary tables of these positions (default: positions
    `start ..`; per-row positions for a left-padded batch); `key_valid` masks keys (padding).
    """
    n = x.shape[-2]
    if cos is None or sin is None:
        cos, sin = w.rotary(torch.arange(start, start + n, device=x.device), x.dtype)
    offset = 0 if query_from is None else query_from - start
    if w.splice is not None:  # dictionaries spliced in: their edits around the caller's
        edits = w.splice.block_edits(layer, edits or {})
    elif edits and any(is_dictionary_point(name) for name in edits):
        raise ValueError(
            f"edits at {sorted(n for n in edits if is_dictionary_point(n))} in block {layer}, but no "
            "dictionary is spliced into this model (use `with interp.splice(model, dicts):`)"
        )
    if edits:
        return _edited(w, layer, x, start, offset, cos, sin, k_prefix, v_prefix, key_valid, edits, keep)
    h = layer_norm(x, w.ln_w[layer], w.ln_b[layer], w.eps)
    q, k, v = qkv(w, layer, h, cos, sin, offset)
    z, pattern = attend(q, k, v, start + offset, k_prefix, v_prefix, key_valid)
    attn_out = head_out(w, layer, z)
    mlp_out = mlp(w, layer, h[..., offset:, :])
    resid_post = x[..., offset:, :] + attn_out + mlp_out
    if not keep:
        return BlockOut(resid_post, k, v)
    return BlockOut(resid_post, k, v, z, attn_out, mlp_out, q, pattern)


def _edited(w, layer, x, start, offset, cos, sin, k_prefix, v_prefix, key_valid, edits, keep) -> BlockOut:
    """The block step by step, each activation through its edit point (TransformerLens layouts)."""
    n = x.shape[-2]
    q_start, n_q = start + offset, n - offset
    prefix = f"blocks.{layer}."

    def at(
        point: str, tensor: Float[Tensor, " ..."] | None, first: int = start, count: int = n
    ) -> Float[Tensor, " ..."] | None:
        fns = edits.get(point)
        return apply(fns, tensor, Site(prefix + point, layer, first, count)) if fns else tensor

    def at_q(
        point: str, tensor: Float[Tensor, " ..."] | None
    ) -> Float[Tensor, " ..."] | None:  # a point on the query (output) positions
        return at(point, tensor, q_start, n_q)

    def heads_first(
        point: str, t: Float[Tensor, "... head pos d_head"], first: int, count: int
    ) -> Float[Tensor, "... head pos d_head"]:
        if point not in edits:
            return t
        edited = at(point, einops.rearrange(t, "... h p d -> ... p h d"), first, count)
        return einops.rearrange(edited, "... p h d -> ... h p d")

    x = at("hook_resid_pre", x)
    split = {part: f"hook_{part}_input" for part in "qkv" if f"hook_{part}_input" in edits}
    inputs = {
        part: at(name, x.unsqueeze(-2).expand(*x.shape[:-1], w.n_heads, x.shape[-1]))
        for part, name in split.items()
    }
    if edits.keys() & LN_INSIDE:
        centred = x - x.mean(-1, keepdim=True)
        scale = (centred.pow(2).mean(-1, keepdim=True) + w.eps).sqrt()
        edited_scale = at("ln1.hook_scale", scale)
        normalized = centred / edited_scale
        edited = at("ln1.hook_normalized", normalized)
        if edited is normalized and edited_scale is scale:  # read only: the LayerNorm's own numerics
            h = layer_norm(x, w.ln_w[layer], w.ln_b[layer], w.eps)
        else:
            h = edited * w.ln_w[layer] + w.ln_b[layer]
    else:
        h = layer_norm(x, w.ln_w[layer], w.ln_b[layer], w.eps)
    h = at("ln1.hook_out", h)

    replaced_z = edits.get("attn.hook_z", [None])[0]
    if isinstance(replaced_z, Replace):  # every head's output given: no attention to compute
        k = v = q = pattern = None
        z = at_q("attn.hook_z", None)
    else:
        q, k, v = _projections(w, layer, h, inputs)  # each [... head pos d_head], not rotated
        q = heads_first("attn.hook_q", q[..., offset:, :], q_start, n_q)
        k = heads_first("attn.hook_k", k, start, n)
        v = heads_first("attn.hook_v", v, start, n)
        q = heads_first(
            "attn.hook_rot_q",
            rotate(q, cos[..., offset:, :], sin[..., offset:, :], w.rotary_dim),
            q_start,
            n_q,
        )
        k = heads_first("attn.hook_rot_k", rotate(k, cos, sin, w.rotary_dim), start, n)
        inside = edits.keys() & ATTENTION_INSIDE
        z, pattern = attend(q, k, v, q_start, k_prefix, v_prefix, key_valid, at_q if inside else None)
        z = at_q("attn.hook_z", z)
    if "attn.hook_result" in edits:
        result = einops.einsum(z, w.W_O[layer], "... p h d, h d m -> ... p h m")
        attn_out = at_q("attn.hook_result", result).sum(-2) + w.b_O[layer]
    else:
        attn_out = head_out(w, layer, z)
    attn_out = at_q("hook_attn_out", attn_out)
    if "hook_mlp_in" in edits:  # the MLP's own input, through its own LayerNorm
        h_mlp = layer_norm(at("hook_mlp_in", x), w.ln_w[layer], w.ln_b[layer], w.eps)[..., offset:, :]
    else:
        h_mlp = h[..., offset:, :]
    if edits.keys() & MLP_INSIDE:
        pre = at_q("mlp.hook_pre", torch.nn.functional.linear(h_mlp, w.W_in[layer], w.b_in[layer]))
        post = at_q("mlp.hook_post", gelu(pre, w.act))
        mlp_out = torch.nn.functional.linear(post, w.W_out[layer], w.b_out[layer])
    else:
        mlp_out = mlp(w, layer, h_mlp)
    mlp_out = at_q("hook_mlp_out", mlp_out)
    resid_post = at_q("hook_resid_post", x[..., offset:, :] + attn_out + mlp_out)
    if not keep:
        return BlockOut(resid_post, k, v)
    return BlockOut(resid_post, k, v, z, attn_out, mlp_out, q, pattern)


def _projections(
    w: PhiWeights, layer: int, h: Float[Tensor, "... pos d_model"], inputs: dict[str, Tensor]
) -> list[Float[Tensor, "... head pos d_head"]]:
    """Unrotated q, k, v ([... head pos d_head]) from the shared LayerNorm output `h`, except the parts
    with split inputs ([... pos head d_model]), each head of which gets its own LayerNorm."""
    parts: list[Tensor | None] = [None] * 3
    if len(inputs) < 3:
        fused = torch.nn.functional.linear(h, w.W_QKV[layer], w.b_QKV[layer])
        parts = list(einops.rearrange(fused, "... p (three h d) -> three ... h p d", three=3, h=w.n_heads))
    if not inputs:
        return parts
    W = einops.rearrange(w.W_QKV[layer], "(three h d) m -> three h d m", three=3, h=w.n_heads)
    b = einops.rearrange(w.b_QKV[layer], "(three h d) -> three h d", three=3, h=w.n_heads)
    for i, part in enumerate("qkv"):
        if part in inputs:
            normed = layer_norm(inputs[part], w.ln_w[layer], w.ln_b[layer], w.eps)  # ... p h m
            projected = einops.einsum(normed, W[i], "... p h m, h d m -> ... h p d")
            parts[i] = projected + b[i][:, None, :]
    return parts


def final_logits(
    w: PhiWeights, x: Float[Tensor, "... pos d_model"], edits: BlockEdits | None = None, start: int = 0
) -> Float[Tensor, "... pos d_vocab"]:
    """The final LayerNorm and the unembedding, through the model-level edit points
    (`ln_final.hook_out`, `hook_unembed`) when `edits` has them; `start`: the first position's index."""
    if not edits:
        return unembed(w, x)
    n = x.shape[-2]
    normed = layer_norm(x, w.ln_f_w, w.ln_f_b, w.eps)
    normed = apply(edits.get("ln_final.hook_out"), normed, Site("ln_final.hook_out", None, start, n))
    logits = torch.nn.functional.linear(normed, w.W_U, w.b_U)
    return apply(edits.get("hook_unembed"), logits, Site("hook_unembed", None, start, n))


@dataclass
class ForwardRun:
    """A whole forward: the residual entering every block, every block's output, the final residual."""

    resid_pre: list[Float[Tensor, "... batch pos d_model"]]
    blocks: list[BlockOut]
    resid_final: Float[Tensor, "... batch dest_pos d_model"]  # final position only with `last_only`
    model_edits: dict = field(default_factory=dict)  # the model-level edits (for `logits`)

    def logits(self, w: PhiWeights) -> Float[Tensor, "... batch d_vocab"]:
        """The final position's logits, through the model-level edit points."""
        n = self.resid_pre[0].shape[-2] if self.resid_pre else self.resid_final.shape[-2]
        return final_logits(w, self.resid_final[..., -1:, :], self.model_edits, n - 1)[..., 0, :]


def forward(
    w: PhiWeights,
    embed: Float[Tensor, "... batch pos d_model"],
    edits: Edits | None = None,
    *,
    keep: bool = False,
    last_only: bool = False,
) -> ForwardRun:
    """The whole sequence through every block, with `edits` (TransformerLens hook name -> edits).

    `keep`: every block's q, k, v, z, pattern, attn_out and mlp_out in `blocks`; `last_only`: the last
    block computes its outputs at the final position only (all a final-position metric reads)."""
    grouped, model = by_layer(edits, w.n_layers)
    n_pos = embed.shape[-2]
    x = apply(model.get("hook_embed"), embed, Site("hook_embed", None, 0, n_pos))
    cos, sin = w.rotary(torch.arange(n_pos, device=x.device), x.dtype)
    run = ForwardRun([], [], x, model)
    for layer in range(w.n_layers):
        last = last_only and layer == w.n_layers - 1
        run.resid_pre.append(x)
        out = block(
            w,
            layer,
            x,
            query_from=n_pos - 1 if last else None,
            keep=keep,
            edits=grouped[layer],
            cos=cos,
            sin=sin,
        )
        run.blocks.append(out)
        x = out.resid_post
    run.resid_final = x
    return run


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
        run = forward(w, x, keep=True)
        blocks = run.blocks
        return RunCache(
            run.resid_pre,
            *(
                [getattr(b, name) for b in blocks]
                for name in ("k", "v", "q", "z", "pattern", "attn_out", "mlp_out")
            ),
            run.resid_final,
            unembed(w, run.resid_final[:, -1]),
        )


@torch.no_grad()
def run_final_logits(w: PhiWeights, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch d_vocab"]:
    """Final-position logits only (the last block runs at the final position alone)."""
    return forward(w, w.W_E[tokens], last_only=True).logits(w)


def forward_logits(w: PhiWeights, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_vocab"]:
    """All-position logits: the plain forward pass, equal to the bridge's logits (tested)."""
    return unembed(w, forward(w, w.W_E[tokens]).resid_final)
