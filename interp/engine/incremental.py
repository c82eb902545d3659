"""The Phi forward over new positions only, with a key/value cache: what generation runs each step.

`IncrementalRun.extend(tokens)` runs the new positions through every block, attending to the cached
keys and values of earlier positions, appends the new keys and values, and returns the logits of the
new positions. It offers TransformerLens's hook points (`POINTS`, by their TransformerLens names and
in TransformerLens's layouts) as edit points: `edits[name]` is a list of functions `fn(tensor, site)
-> tensor`, called in order where the forward computes that activation; `site` says which absolute
positions the tensor's position axis holds (`dest_pos` for scores and patterns).

Each call sees only the positions being run, and each position is run once, so an edit applied at
every step computes what a full forward over the whole sequence with the same edit computes (a test
holds the two equal, with TransformerLens's own `run_with_hooks` as the reference). Under the cache,
`attn.hook_attn_scores` / `attn.hook_pattern` are `[batch head new_pos all_pos]`; edited keys and
values are what the cache keeps, as in a full forward. Future positions do not exist yet, so an edit
that writes the masked (future) entries of a score or pattern row, which a full forward would let
look ahead, has nothing to write here. `keep` names points whose (edited) values to
return for the new positions: activations of generated tokens without a second forward pass.

`pad` runs a left-padded batch: row b's first `pad[b]` positions are masked as keys, and its rotary
positions count from its first real token; sites and kept activations stay in padded coordinates.

Attention internals (q, k, v, rotated q/k, scores, pattern) and the MLP's hidden layer are computed
separately only in blocks where an edit or `keep` asks for them; elsewhere the fused fast path runs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.engine.forward import (
    PhiWeights,
    attend,
    gelu,
    head_out,
    layer_norm,
    mask_scores,
    mlp,
    qkv,
    rotate,
)
from interp.model.hooks import pos_axis

# per block, in the order the block computes them (names after "blocks.{layer}.")
BLOCK_POINTS = (
    "hook_resid_pre",
    "ln1.hook_out",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_rot_q",
    "attn.hook_rot_k",
    "attn.hook_attn_scores",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "mlp.hook_pre",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
)
ATTENTION_INSIDE = frozenset(BLOCK_POINTS[2:9])
MLP_INSIDE = frozenset({"mlp.hook_pre", "mlp.hook_post"})


def points(n_layers: int) -> list[str]:
    """Every edit point, by TransformerLens name, in the order the forward reaches them."""
    inner = [f"blocks.{layer}.{p}" for layer in range(n_layers) for p in BLOCK_POINTS]
    return ["hook_embed", *inner, "ln_final.hook_out", "hook_unembed"]


def fit_src_pos(t: Tensor, length: int, point: str) -> Tensor:
    """A score or pattern tensor's last (src_pos) axis cut or widened to `length`, the new entries
    filled as the causal mask fills them: pattern 0, scores the dtype's minimum."""
    have = t.shape[-1]
    if have >= length:
        return t[..., :length]
    fill = 0.0 if point.endswith("hook_pattern") else torch.finfo(t.dtype).min
    return torch.nn.functional.pad(t, (0, length - have), value=fill)


@dataclass(frozen=True)
class Site:
    """Where an edit function is called: the hook point and the absolute positions on its position axis."""

    name: str
    layer: int | None
    start: int  # absolute position of the first entry on the position axis
    n: int  # entries on the position axis

    @property
    def stop(self) -> int:
        return self.start + self.n


EditFn = Callable[[Tensor, Site], Tensor]


class IncrementalRun:
    """One batch of sequences (equal-length, or left-padded by `pad`) being extended; holds each layer's
    keys and values."""

    def __init__(
        self,
        w: PhiWeights,
        edits: Mapping[str, Sequence[EditFn]] | None = None,
        keep: Collection[str] = (),
        pad: Int[Tensor, " batch"] | None = None,
    ):
        self.w = w
        # left padding: row b's first pad[b] positions are padding, masked as keys; its real
        # positions count from the first real token (rotary); sites stay in padded coordinates
        self.pad = pad
        self.edits = {name: list(fns) for name, fns in (edits or {}).items() if fns}
        self.keep = frozenset(keep)
        unknown = (set(self.edits) | self.keep) - set(points(w.n_layers))
        if unknown:
            raise ValueError(f"not edit points of this model: {sorted(unknown)}")
        wanted = set(self.edits) | self.keep
        # per layer: which of its points are edited or kept (short names)
        self._wanted = [
            {p for p in BLOCK_POINTS if f"blocks.{layer}.{p}" in wanted} for layer in range(w.n_layers)
        ]
        self._global = {p for p in ("hook_embed", "ln_final.hook_out", "hook_unembed") if p in wanted}
        self.k: list[Tensor | None] = [None] * w.n_layers
        self.v: list[Tensor | None] = [None] * w.n_layers
        self.length = 0

    def _at(self, name: str, layer: int | None, tensor: Tensor, start: int, kept: dict) -> Tensor:
        fns = self.edits.get(name)
        if fns:
            site = Site(name, layer, start, tensor.shape[pos_axis(name)])
            for fn in fns:
                tensor = fn(tensor, site)
        if name in self.keep:
            kept[name] = tensor
        return tensor

    @torch.no_grad()
    def extend(
        self, tokens: Int[Tensor, "batch pos"], *, all_logits: bool = False
    ) -> tuple[Float[Tensor, "batch dest_pos d_vocab"], dict[str, Tensor]]:
        """Logits of the new positions (only the last one unless `all_logits`) and the kept activations."""
        w = self.w
        start = self.length
        n_new = tokens.shape[1]
        positions = torch.arange(start, start + n_new, device=tokens.device)
        key_valid = None  # bool [batch, every position so far]: False at padding
        if self.pad is not None:
            pad = self.pad.to(tokens.device)
            positions = (positions[None, :] - pad[:, None]).clamp_min(0)  # batch pos
            key_valid = torch.arange(start + n_new, device=tokens.device)[None, :] >= pad[:, None]
        cos, sin = w.rotary(positions, w.W_E.dtype)
        if self.pad is not None:  # batch pos rot -> batch 1 pos rot, against [batch head pos d_head]
            cos, sin = cos[:, None], sin[:, None]
        kept: dict[str, Tensor] = {}
        x = w.W_E[tokens]
        if "hook_embed" in self._global:
            x = self._at("hook_embed", None, x, start, kept)
        for layer in range(w.n_layers):
            x = self._block(layer, x, start, cos, sin, key_valid, kept)
        self.length += n_new
        if not all_logits:
            x, start = x[:, -1:], start + n_new - 1
        normed = layer_norm(x, w.ln_f_w, w.ln_f_b, w.eps)
        if "ln_final.hook_out" in self._global:
            normed = self._at("ln_final.hook_out", None, normed, start, kept)
        logits = torch.nn.functional.linear(normed, w.W_U, w.b_U)
        if "hook_unembed" in self._global:
            logits = self._at("hook_unembed", None, logits, start, kept)
        return logits, kept

    def _block(
        self,
        layer: int,
        x: Tensor,
        start: int,
        cos: Tensor,
        sin: Tensor,
        key_valid: Tensor | None,
        kept: dict,
    ) -> Tensor:
        w = self.w
        wanted = self._wanted[layer]
        prefix = f"blocks.{layer}."

        def at(point: str, tensor: Tensor) -> Tensor:
            return self._at(prefix + point, layer, tensor, start, kept) if point in wanted else tensor

        x = at("hook_resid_pre", x)
        h = at("ln1.hook_out", layer_norm(x, w.ln_w[layer], w.ln_b[layer], w.eps))
        if wanted & ATTENTION_INSIDE:
            z = self._attention_hooked(layer, h, start, cos, sin, key_valid, at)
        else:
            q, k, v = qkv(w, layer, h, cos, sin)
            z, _ = attend(q, k, v, start, self.k[layer], self.v[layer], key_valid)
            self._append_kv(layer, k, v)
        z = at("attn.hook_z", z)
        attn_out = at("hook_attn_out", head_out(w, layer, z))
        if wanted & MLP_INSIDE:
            pre = at("mlp.hook_pre", torch.nn.functional.linear(h, w.W_in[layer], w.b_in[layer]))
            post = at("mlp.hook_post", gelu(pre, w.act))
            mlp_out = torch.nn.functional.linear(post, w.W_out[layer], w.b_out[layer])
        else:
            mlp_out = mlp(w, layer, h)
        mlp_out = at("hook_mlp_out", mlp_out)
        return at("hook_resid_post", x + attn_out + mlp_out)

    def _append_kv(self, layer: int, k: Tensor, v: Tensor) -> None:
        self.k[layer] = k if self.k[layer] is None else torch.cat([self.k[layer], k], dim=-2)
        self.v[layer] = v if self.v[layer] is None else torch.cat([self.v[layer], v], dim=-2)

    def _attention_hooked(
        self, layer: int, h: Tensor, start: int, cos: Tensor, sin: Tensor, key_valid: Tensor | None, at
    ) -> Float[Tensor, "batch pos head d_head"]:
        """Attention step by step, each internal activation through its hook point."""
        w = self.w
        fused = torch.nn.functional.linear(h, w.W_QKV[layer], w.b_QKV[layer])
        q, k, v = einops.rearrange(fused, "b p (three h d) -> three b p h d", three=3, h=w.n_heads)
        q, k, v = at("attn.hook_q", q), at("attn.hook_k", k), at("attn.hook_v", v)

        def rotated(t: Tensor) -> Tensor:  # [b p h d] -> rotated, same layout
            heads_first = einops.rearrange(t, "b p h d -> b h p d")
            return einops.rearrange(rotate(heads_first, cos, sin, w.rotary_dim), "b h p d -> b p h d")

        q = at("attn.hook_rot_q", rotated(q))
        k = at("attn.hook_rot_k", rotated(k))
        self._append_kv(
            layer, einops.rearrange(k, "b p h d -> b h p d"), einops.rearrange(v, "b p h d -> b h p d")
        )
        keys, values = self.k[layer], self.v[layer]  # [b h src d], every position so far
        q = einops.rearrange(q, "b p h d -> b h p d")
        scores = torch.matmul(q, keys.transpose(-1, -2)) * q.shape[-1] ** -0.5
        scores = at("attn.hook_attn_scores", mask_scores(scores, start, key_valid))
        pattern = at("attn.hook_pattern", torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype))
        return einops.rearrange(torch.matmul(pattern, values), "b h p d -> b p h d")
