"""The Phi forward over new positions only, with a key/value cache: what generation runs each step.

`IncrementalRun.extend(tokens)` runs the new positions through every block, attending to the cached
keys and values of earlier positions, appends the new keys and values, and returns the logits of the
new positions. Two edit points let a caller intervene at every step:

- `edit_resid(layer, resid, positions)`: the residual stream entering block `layer` (`layer ==
  n_layers`: the final residual), for the absolute `positions` being run;
- `edit_z(layer, z, positions)`: each head's `z` in block `layer` before the output projection.

Both see only the positions being run, so an edit applied at "every step" sees each position once,
exactly as a full forward over the whole sequence with the same edit would (a test holds the two
equal). `keep` names residual streams to return for the new positions (activations of generated
tokens without a second forward pass).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.engine.forward import PhiWeights, attend, head_out, layer_norm, mlp, qkv, unembed

# edit(layer, tensor, positions) -> tensor; positions: Int[Tensor, " pos"] (absolute)
EditFn = Callable[[int, Tensor, Tensor], Tensor]


class IncrementalRun:
    """One batch of equal-length sequences being extended; holds each layer's keys and values."""

    def __init__(
        self,
        w: PhiWeights,
        edit_resid: EditFn | None = None,
        edit_z: EditFn | None = None,
        keep: tuple[str, ...] = (),
    ):
        self.w = w
        self.edit_resid = edit_resid
        self.edit_z = edit_z
        self.keep = keep  # "resid_pre.{layer}" or "resid_final"
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
        cos, sin = w.rotary(positions, w.W_E.dtype)
        x = w.W_E[tokens]
        kept = {}
        for layer in range(w.n_layers):
            if self.edit_resid is not None:
                x = self.edit_resid(layer, x, positions)
            if f"resid_pre.{layer}" in self.keep:
                kept[f"resid_pre.{layer}"] = x
            h = layer_norm(x, w.ln_w[layer], w.ln_b[layer], w.eps)
            q, k, v = qkv(w, layer, h, cos, sin)
            z, _ = attend(q, k, v, start, self.k[layer], self.v[layer])
            if self.edit_z is not None:
                z = self.edit_z(layer, z, positions)
            self.k[layer] = k if self.k[layer] is None else torch.cat([self.k[layer], k], dim=-2)
            self.v[layer] = v if self.v[layer] is None else torch.cat([self.v[layer], v], dim=-2)
            x = x + head_out(w, layer, z) + mlp(w, layer, h)
        if self.edit_resid is not None:
            x = self.edit_resid(w.n_layers, x, positions)
        if "resid_final" in self.keep:
            kept["resid_final"] = x
        self.length += n_new
        logits = unembed(w, x if all_logits else x[:, -1:])
        return logits, kept
