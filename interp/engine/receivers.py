"""The Phi forward with one input per receiver: what circuit evaluation intervenes on.

In a normal forward every head's q, k and v and the block's MLP read the same residual stream. Here
each receiver of layer L (the q, k and v input of every head, then the MLP; `3 * head + 1` of them)
gets its own copy of that input, `inputs[:, r]` of shape `batch receiver pos d_model`, chosen by a
callback. Each copy goes through its own LayerNorm (Phi's one LayerNorm per block is recomputed per
receiver input, so an edge changes only what that receiver sees). With every copy equal to the
residual stream this is exactly `interp.engine.forward` (tested). It is that forward with edits: each
layer's receiver inputs replace the block's split receiver inputs (`hook_q_input`, `hook_k_input`,
`hook_v_input`, `hook_mlp_in`), and each head's write is read at `attn.hook_result`. So:

- circuit evaluation builds each copy from the senders the circuit keeps and ablated values for the
  rest, with the senders' outputs taken from this same forward;
- with a leaf per copy, autograd gives each receiver input's gradient directly: the slow reference that
  `interp.engine.receiver_gradients` (EAP, EAP-IG) is tested equal to.
"""

from __future__ import annotations

from collections.abc import Callable

import einops
from jaxtyping import Float
from torch import Tensor

from interp.engine.edits import Site
from interp.engine.forward import PhiWeights, forward, unembed

# inputs(layer, resid, outputs) -> the receivers' inputs of `layer` ([batch receiver pos d_model]);
# `resid` is the true residual stream entering the layer, `outputs` the sender outputs so far
# (input, then each layer's heads and MLP), each [batch pos d_model]. layer == n_layers: the logits.
InputsFn = Callable[[int, Tensor, list[Tensor]], Tensor]
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

    `replace` may substitute what a layer writes (its heads' outputs, `head batch pos d_model`, and its
    MLP's) before later layers read it; the receivers of that layer still see their own inputs."""
    H = w.n_heads
    outputs: list[Tensor] = [embed]
    used: list[Tensor] = []
    heads: list[Tensor] = []  # this layer's heads' writes, [head batch pos d_model]

    resid_in: list[Tensor] = []  # the residual entering this layer

    def read_inputs(
        resid: Float[Tensor, "batch pos d_model"], site: Site
    ) -> Float[Tensor, "batch pos d_model"]:
        resid_in[:] = [resid]
        used.append(inputs(site.layer, resid, outputs))
        return resid

    def split(first: int, count: int = H) -> Callable[[Tensor, Site], Tensor]:
        def edit(x: Float[Tensor, "batch pos ..."], site: Site) -> Float[Tensor, "batch pos ..."]:
            mine = used[-1][:, first : first + count]  # batch receiver pos d_model
            return (
                einops.rearrange(mine, "batch head pos d_model -> batch pos head d_model")
                if count > 1
                else mine[:, 0]
            )

        return edit

    def read_heads(
        result: Float[Tensor, "batch pos head d_model"], site: Site
    ) -> Float[Tensor, "batch pos head d_model"]:
        heads[:] = [einops.rearrange(result, "batch pos head d_model -> head batch pos d_model")]
        return result

    def write(
        resid_post: Float[Tensor, "batch pos d_model"], site: Site
    ) -> Float[Tensor, "batch pos d_model"]:
        layer_heads, mlp_out = heads[0], last_mlp[0]
        if replace is not None:
            new_heads, new_mlp = replace(site.layer, layer_heads, mlp_out)
            if new_heads is not layer_heads or new_mlp is not mlp_out:  # the residual from what it writes
                resid_post = resid_in[0] + new_heads.sum(0) + w.b_O[site.layer] + new_mlp
            layer_heads, mlp_out = new_heads, new_mlp
        outputs.extend([*layer_heads.unbind(0), mlp_out])
        return resid_post

    last_mlp: list[Tensor] = []

    def read_mlp(
        mlp_out: Float[Tensor, "batch pos d_model"], site: Site
    ) -> Float[Tensor, "batch pos d_model"]:
        last_mlp[:] = [mlp_out]
        return mlp_out

    edits = {}
    for layer in range(w.n_layers):
        prefix = f"blocks.{layer}."
        edits |= {
            prefix + "hook_resid_pre": read_inputs,
            prefix + "hook_q_input": split(0),
            prefix + "hook_k_input": split(H),
            prefix + "hook_v_input": split(2 * H),
            prefix + "hook_mlp_in": split(3 * H, 1),
            prefix + "attn.hook_result": read_heads,
            prefix + "hook_mlp_out": read_mlp,
            prefix + "hook_resid_post": write,
        }
    resid = forward(w, embed, edits).resid_final
    final = inputs(w.n_layers, resid, outputs)
    used.append(final)
    return unembed(w, final[:, 0, -1]), used, outputs


def n_receivers(w: PhiWeights, layer: int) -> int:
    """Receivers of `layer`: q, k and v of every head and the MLP; one (the logits) at `n_layers`."""
    return 1 if layer == w.n_layers else 3 * w.n_heads + 1


def copies(w: PhiWeights) -> InputsFn:
    """The plain forward: every receiver of a layer reads the residual stream (a copy per receiver)."""

    def inputs(
        layer: int,
        resid: Float[Tensor, "batch pos d_model"],
        outputs: list[Float[Tensor, "batch pos d_model"]],
    ) -> Float[Tensor, "batch receiver pos d_model"]:
        return einops.repeat(
            resid, "batch pos d_model -> batch receiver pos d_model", receiver=n_receivers(w, layer)
        ).clone()

    return inputs
