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

Each step runs the one block body (`interp.engine.forward.block`) over the new positions with the
cached keys and values as its prefix, the edits being the engine's edit protocol
(`interp.engine.edits`); blocks with no edit or kept point run the fused fast path.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.engine import hook_points
from interp.engine.edits import EditFn, Keep, Site, apply, by_layer
from interp.engine.forward import block as run_block
from interp.engine.forward import final_logits
from interp.engine.weights import PhiWeights

__all__ = ["BLOCK_POINTS", "EditFn", "IncrementalRun", "Site", "fit_src_pos", "points"]

# the block points generation offers, in the order the block computes them (names after "blocks.{layer}.")
_OFFERED = frozenset(
    {
        "hook_resid_pre",
        "ln1.hook_out",
        *hook_points.ATTENTION_INSIDE,
        "attn.hook_z",
        "hook_attn_out",
        *hook_points.MLP_INSIDE,
        "hook_mlp_out",
        "hook_resid_post",
    }
)
BLOCK_POINTS = tuple(p for p in hook_points.BLOCK_POINTS if p in _OFFERED)


def points(n_layers: int) -> list[str]:
    """Every edit point generation offers, by TransformerLens name, in the order the forward reaches them
    (a spliced dictionary's points after the hook they belong to)."""
    inner = [f"blocks.{layer}.{p}" for layer in range(n_layers) for p in BLOCK_POINTS]
    return hook_points.with_spliced(["hook_embed", *inner, "ln_final.hook_out", "hook_unembed"])


def fit_src_pos(
    t: Float[Tensor, "... dest_pos src_pos"], length: int, point: str
) -> Float[Tensor, " ..."]:  # src_pos now `length`
    """A score or pattern tensor's last (src_pos) axis cut or widened to `length`, the new entries
    filled as the causal mask fills them: pattern 0, scores the dtype's minimum."""
    have = t.shape[-1]
    if have >= length:
        return t[..., :length]
    fill = 0.0 if point.endswith("hook_pattern") else torch.finfo(t.dtype).min
    return torch.nn.functional.pad(t, (0, length - have), value=fill)


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
        self._kept: dict[str, Tensor] = {}
        edits = {name: list(fns) for name, fns in (edits or {}).items() if fns}
        for name in keep:  # kept after the edits there
            edits.setdefault(name, []).append(Keep(self._kept))
        self._blocks, self._model = by_layer(edits, w.n_layers, BLOCK_POINTS)
        self.k: list[Tensor | None] = [None] * w.n_layers
        self.v: list[Tensor | None] = [None] * w.n_layers
        self.length = 0

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
        self._kept.clear()
        x = apply(self._model.get("hook_embed"), w.W_E[tokens], Site("hook_embed", None, start, n_new))
        for layer in range(w.n_layers):
            out = run_block(
                w,
                layer,
                x,
                start,
                self.k[layer],
                self.v[layer],
                edits=self._blocks[layer],
                cos=cos,
                sin=sin,
                key_valid=key_valid,
            )
            self._append_kv(layer, out.k, out.v)
            x = out.resid_post
        self.length += n_new
        if not all_logits:
            x, start = x[:, -1:], start + n_new - 1
        logits = final_logits(w, x, self._model, start)
        return logits, dict(self._kept)

    def _append_kv(
        self,
        layer: int,
        k: Float[Tensor, "... head pos d_head"] | None,
        v: Float[Tensor, "... head pos d_head"] | None,
    ) -> None:
        if k is None or v is None:
            raise ValueError(
                f"block {layer} computed no keys or values (a Replace at attn.hook_z skips attention); "
                "generation needs them: edit attn.hook_z with a function instead"
            )
        self.k[layer] = k if self.k[layer] is None else torch.cat([self.k[layer], k], dim=-2)
        self.v[layer] = v if self.v[layer] is None else torch.cat([self.v[layer], v], dim=-2)
