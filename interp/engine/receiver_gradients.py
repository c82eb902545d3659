"""Gradients at every receiver input from one plain forward and backward: what EAP and EAP-IG score with.

An edge `s -> r` is scored with `delta_s . d metric / d input_r`, where `input_r` is what receiver r
(the q, k or v input of one head, an MLP, or the logits) reads: the residual stream before its
LayerNorm. Every receiver of a block reads the same residual through the same LayerNorm, so the
per-receiver gradient does not need a copy of the residual per receiver (what `engine.receivers`
builds for circuit evaluation). This module runs the plain forward once (the one block body with
edits: `Keep(grad=True)` at `attn.hook_q/k/v` and at the MLP's split input `hook_mlp_in`) and takes
autograd's gradients there, then splits the q/k/v ones per receiver by hand:

    receiver r = head h's q (k, v):   g_r = dL/d(q_h) @ W_Q[h]          (the LayerNorm output side)
    through the shared LayerNorm:     dL/d input_r = rstd * (gw - mean(gw) - x_hat * mean(gw * x_hat)),
                                      gw = ln_w * g_r,  x_hat and rstd the block's normalised input
    receiver r = the MLP:             dL/d input_r = dL/d(hook_mlp_in), its own LayerNorm's backward

(the LayerNorm's backward, per receiver). The mean(gw) term is kept apart as a per-position number,
so the sender side reduces it with one sum; everything else is one einsum per layer. The costs over a
plain forward + backward are the split (one matmul the size of the q/k/v projection's backward) and
the scores themselves (`senders x receivers x pos x d_model` multiply-adds per prompt).

Runs keep each head's `z` and each MLP's output; what a head writes (`z_h @ W_O[h]`) is formed only
for the difference of two runs (`sender_deltas`), which is all the scores read. A gradient run may
substitute what a layer writes (EAP-IG's activations variant interpolates one node group at a time); `engine.receivers.run_receivers` with one copy per receiver is the slow reference
this module is tested equal to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from interp.engine.edits import Keep, Site
from interp.engine.forward import PhiWeights, forward, head_out, unembed

# replace(layer, z, mlp_out) -> (z, mlp_out): what layer `layer`'s heads ([batch pos head d_head]) and MLP
# ([batch pos d_model]) write, before later layers read it, e.g. an interpolation between two runs
ReplaceFn = Callable[[int, Tensor, Tensor], tuple[Tensor, Tensor]]


def _wide(x: Float[Tensor, " ..."]) -> Float[Tensor, " ..."]:
    """At least float32 (bfloat16 runs accumulate in float32; float64 stays float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


@contextmanager
def _matmul_precision(dtype: torch.dtype) -> Iterator[None]:
    """TensorFloat-32 for float32 products on CUDA when the model itself runs in 16 bits: the products'
    rounding (about 5e-4) is then below the model's own (bfloat16: 4e-3), at several times the speed.
    A float32 model keeps full float32 products."""
    if dtype not in (torch.bfloat16, torch.float16):
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


@dataclass
class _Block:
    """What the gradient split needs of one block of a gradient run (autograd nodes and their context)."""

    qkv: tuple[Tensor, Tensor, Tensor]  # [batch pos head d_head] each: the q/k/v projection, autograd nodes
    mlp_in: Float[Tensor, "batch pos d_model"]  # the residual as the MLP reads it (own LayerNorm), a node
    projected: Float[Tensor, "batch pos qkv"]  # W_QKV (ln_w * x_hat), no biases, detached
    x_hat: Float[Tensor, "batch pos d_model"]  # the normalised residual, detached
    rstd: Float[Tensor, "batch pos 1"]  # 1 / sqrt(var + eps), detached


@dataclass
class SenderRun:
    """A forward pass that keeps what every sender writes, optionally recorded for a gradient split."""

    logits: Float[Tensor, "batch d_vocab"]  # final position
    embed: Float[Tensor, "batch pos d_model"]  # detached, as everything below
    z: list[Float[Tensor, "batch pos head d_head"]]
    mlp_out: list[Float[Tensor, "batch pos d_model"]]
    blocks: list[_Block] = field(default_factory=list)
    final: Float[Tensor, "batch d_model"] | None = None  # the final position's residual, an autograd node


def sender_run(
    w: PhiWeights,
    embed: Float[Tensor, "batch pos d_model"],
    *,
    replace: ReplaceFn | None = None,
    record: bool = False,
) -> SenderRun:
    """The Phi forward, keeping every layer's `z` and MLP output.

    `record=True` (under autograd) keeps the nodes `EdgeGradients.add` differentiates against."""
    if record and not embed.requires_grad:
        embed = embed.detach().requires_grad_(True)  # a graph to differentiate, whatever the weights' flags
    if not record and replace is None:  # the fused fast path
        run = forward(w, embed, keep=True)
        zs = [b.z.detach() for b in run.blocks]
        mlp_outs = [b.mlp_out.detach() for b in run.blocks]
        return SenderRun(unembed(w, run.resid_final[:, -1]), embed.detach(), zs, mlp_outs)
    store: dict[str, Tensor] = {}
    zs, mlp_outs = [], []

    def written(
        resid_post: Float[Tensor, "batch pos d_model"], site: Site
    ) -> Float[Tensor, "batch pos d_model"]:
        prefix = f"blocks.{site.layer}."
        z, mlp_out = store[prefix + "attn.hook_z"], store[prefix + "hook_mlp_out"]
        if replace is not None:  # what the layer writes, substituted before later layers read it
            new_z, new_mlp = replace(site.layer, z, mlp_out)
            if new_z is not z or new_mlp is not mlp_out:
                resid_post = store[prefix + "hook_resid_pre"] + head_out(w, site.layer, new_z) + new_mlp
            z, mlp_out = new_z, new_mlp
        zs.append(z.detach())
        mlp_outs.append(mlp_out.detach())
        return resid_post

    keep_graph = Keep(store, grad=True)
    edits = {}
    for layer in range(w.n_layers):
        prefix = f"blocks.{layer}."
        edits |= {prefix + p: keep_graph for p in ("hook_resid_pre", "attn.hook_z", "hook_mlp_out")}
        if record:
            edits |= {
                prefix + p: keep_graph for p in ("attn.hook_q", "attn.hook_k", "attn.hook_v", "hook_mlp_in")
            }
        edits[prefix + "hook_resid_post"] = written
    run = forward(w, embed, edits)
    blocks = [_record(w, layer, store, f"blocks.{layer}.") for layer in range(w.n_layers)] if record else []
    final = run.resid_final[:, -1]
    return SenderRun(unembed(w, final), embed.detach(), zs, mlp_outs, blocks, final if record else None)


def sender_deltas(
    w: PhiWeights, source: SenderRun, base: SenderRun
) -> Float[Tensor, "batch sender pos d_model"]:
    """What every sender writes in `source` minus what it writes in `base` (heads: `dz_h @ W_O[h]`), at
    least in float32; senders in the graph's order (input, then each layer's heads and MLP)."""
    H = w.n_heads
    batch, n_pos, d_model = base.embed.shape
    out = torch.empty(
        batch,
        1 + w.n_layers * (H + 1),
        n_pos,
        d_model,
        device=base.embed.device,
        dtype=torch.promote_types(base.embed.dtype, torch.float32),
    )
    out[:, 0] = _wide(source.embed) - _wide(base.embed)
    for layer in range(w.n_layers):
        first = 1 + layer * (H + 1)
        dz = _wide(source.z[layer]) - _wide(base.z[layer])
        with _matmul_precision(w.W_E.dtype):
            out[:, first : first + H] = einops.einsum(
                dz,
                _wide(w.W_O[layer]),
                "batch pos head d_head, head d_head d_model -> batch head pos d_model",
            )
        out[:, first + H] = _wide(source.mlp_out[layer]) - _wide(base.mlp_out[layer])
    return out


@torch.no_grad()
def _record(w: PhiWeights, layer: int, store: dict[str, Tensor], prefix: str) -> _Block:
    x = _wide(store[prefix + "hook_resid_pre"])
    var, mean = torch.var_mean(x, -1, keepdim=True, correction=0)
    rstd = torch.rsqrt(var + w.eps)
    ln_b_through = torch.nn.functional.linear(w.ln_b[layer], w.W_QKV[layer])  # W_QKV ln_b
    nodes = tuple(store[prefix + f"attn.hook_{part}"] for part in "qkv")
    projected = _wide(_fused(nodes)) - _wide(w.b_QKV[layer] + ln_b_through)
    return _Block(nodes, store[prefix + "hook_mlp_in"], projected, (x - mean) * rstd, rstd)


def _fused(parts: Sequence[Float[Tensor, "batch pos head d_head"]]) -> Float[Tensor, "batch pos qkv"]:
    """q, k, v ([batch pos head d_head] each) in the fused projection's layout (part head d_head)."""
    return torch.cat([einops.rearrange(t, "b p h d -> b p (h d)") for t in parts], -1)


class EdgeGradients:
    """Per-receiver input gradients summed over gradient runs, and the edge scores they give.

    `add` one run per point (EAP: the base run; EAP-IG: each interpolation step), then `scores` with the
    senders' differences: `[batch sender receiver]`, the mean over runs of `delta_s . dL/d input_r`,
    summed over positions and d_model (zero where a receiver does not read a sender). Sums are kept in
    place (`receiver batch pos d_model` per layer, at least float32): no per-run temporaries that size."""

    def __init__(self, w: PhiWeights):
        self.w = w
        self.runs = 0
        self.G: list[Tensor] = []  # per layer [receiver batch pos d_model]; the logits: [batch d_model]
        self.U: list[Tensor] = []  # per layer [batch receiver pos]: rstd * mean(gw), kept apart

    def add(self, run: SenderRun, objective: Float[Tensor, ""]) -> None:
        """Differentiate `objective` (computed from `run.logits`) at every receiver input of `run`."""
        nodes = [t for b in run.blocks for t in (*b.qkv, b.mlp_in)] + [run.final]
        grads = [
            torch.zeros_like(node) if grad is None else grad  # a node a substituted layer no longer uses
            for node, grad in zip(
                nodes, torch.autograd.grad(objective, nodes, allow_unused=True), strict=True
            )
        ]
        with torch.no_grad(), _matmul_precision(self.w.W_E.dtype):
            for layer, block in enumerate(run.blocks):
                self._split(layer, block, _fused(grads[4 * layer : 4 * layer + 3]), grads[4 * layer + 3])
            if self.runs == 0:
                self.G.append(_wide(grads[-1]))
            else:
                self.G[-1].add_(grads[-1])
        self.runs += 1

    def _split(
        self,
        layer: int,
        block: _Block,
        d_fused: Float[Tensor, "batch pos qkv"],
        d_mlp_in: Float[Tensor, "batch pos d_model"],
    ) -> None:
        """Add one block's receiver-input gradients: G += rstd * (gw - x_hat * mean(gw x_hat)) and
        U += rstd * mean(gw), per receiver (q, k, v of every head); the MLP's, `d_mlp_in`, is already its
        input's gradient (G += it, U += 0)."""
        w = self.w
        batch, n_pos, d_model = block.x_hat.shape
        R = 3 * w.n_heads
        ln_w = _wide(w.ln_w[layer])
        W = einops.rearrange(_wide(w.W_QKV[layer]), "(r d_head) d_model -> r d_head d_model", d_head=w.d_head)
        W = W * ln_w  # the LayerNorm's weight folded in: gw = ln_w * (d_fused_r @ W_r)
        d_fused = einops.rearrange(
            _wide(d_fused) * block.rstd, "batch pos (r d_head) -> batch pos r d_head", d_head=w.d_head
        )
        projected = einops.rearrange(
            block.projected, "batch pos (r d_head) -> batch pos r d_head", d_head=w.d_head
        )
        U_heads = einops.einsum(d_fused, W.sum(-1), "batch pos r d_head, r d_head -> batch r pos") / d_model
        V_heads = (
            einops.einsum(d_fused, projected, "batch pos r d_head, batch pos r d_head -> batch r pos")
            / d_model
        )
        g_mlp = _wide(d_mlp_in)  # [batch pos d_model]: through its own LayerNorm already
        U = torch.cat([U_heads, torch.zeros_like(U_heads[:, :1])], 1)
        V = torch.cat([V_heads, torch.zeros_like(V_heads[:, :1])], 1)
        rows = einops.rearrange(d_fused, "batch pos r d_head -> r (batch pos) d_head")
        if self.runs == 0:
            G = torch.empty(R + 1, batch, n_pos, d_model, device=W.device, dtype=W.dtype)
            torch.bmm(rows, W, out=G[:R].view(R, batch * n_pos, d_model))  # the heads' q, k, v
            G[R] = g_mlp
            self.G.append(G)
            self.U.append(U)
        else:
            G = self.G[layer]
            G[:R].view(R, batch * n_pos, d_model).baddbmm_(rows, W)  # summed in place
            G[R].add_(g_mlp)
            self.U[layer].add_(U)
        G.addcmul_(block.x_hat[None], einops.rearrange(V, "batch r pos -> r batch pos")[..., None], value=-1)

    @torch.no_grad()
    def scores(
        self, deltas: Float[Tensor, "batch sender pos d_model"]
    ) -> Float[Tensor, "batch sender receiver"]:
        """Mean over the added runs of `delta_s . dL/d input_r` for every sender and receiver input."""
        with _matmul_precision(self.w.W_E.dtype):
            return self._scores(deltas)

    def _scores(
        self, deltas: Float[Tensor, "batch sender pos d_model"]
    ) -> Float[Tensor, "batch sender receiver"]:
        w = self.w
        H = w.n_heads
        batch, n_senders, n_pos, d_model = deltas.shape
        R = 3 * H + 1
        out = torch.zeros(batch, n_senders, R * w.n_layers + 1, device=deltas.device, dtype=self.G[-1].dtype)
        sums = _wide(deltas.sum(-1))  # batch sender pos: what the mean(gw) term reads
        for layer in range(w.n_layers):
            n = 1 + layer * (H + 1)  # senders written before this layer reads
            flat = _wide(deltas[:, :n]).reshape(batch, n, n_pos * d_model)
            G = einops.rearrange(self.G[layer], "r batch pos d_model -> batch (pos d_model) r")
            block = torch.bmm(flat, G)  # batch sender receiver
            block -= einops.einsum(sums[:, :n], self.U[layer], "batch s pos, batch r pos -> batch s r")
            out[:, :n, layer * R : (layer + 1) * R] = block
        last = _wide(deltas[:, :, -1])  # the logits read the final position only
        out[:, :, -1] = einops.einsum(last, self.G[-1], "batch s d_model, batch d_model -> batch s")
        return out / self.runs
