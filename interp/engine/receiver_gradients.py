"""Gradients at every receiver input from one plain forward and backward: what EAP and EAP-IG score with.

An edge `s -> r` is scored with `delta_s . d metric / d input_r`, where `input_r` is what receiver r
(the q, k or v input of one head, an MLP, or the logits) reads: the residual stream before its
LayerNorm. Every receiver of a block reads the same residual through the same LayerNorm, so the
per-receiver gradient does not need a copy of the residual per receiver (what `engine.receivers`
builds for circuit evaluation). This module runs the plain forward once and takes autograd's gradients
at the block's fused q/k/v projection output and at the MLP's input, then splits them per receiver by
hand:

    receiver r = head h's q (k, v):   g_r = dL/d(q_h) @ W_Q[h]          (the LayerNorm output side)
    receiver r = the MLP:             g_r = dL/d(MLP input)
    through the shared LayerNorm:     dL/d input_r = rstd * (gw - mean(gw) - x_hat * mean(gw * x_hat)),
                                      gw = ln_w * g_r,  x_hat and rstd the block's normalised input

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

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from interp.engine.forward import PhiWeights, attend, head_out, layer_norm, mlp, rotate, unembed

# replace(layer, z, mlp_out) -> (z, mlp_out): what layer `layer`'s heads ([batch pos head d_head]) and MLP
# ([batch pos d_model]) write, before later layers read it, e.g. an interpolation between two runs
ReplaceFn = Callable[[int, Tensor, Tensor], tuple[Tensor, Tensor]]


def _wide(x: Tensor) -> Tensor:
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

    fused: Tensor  # [batch pos (part head d_head)]: the q/k/v projection, an autograd node
    mlp_in: Tensor  # [batch pos d_model]: the LayerNorm output as the MLP reads it, an autograd node
    projected: Tensor  # [batch pos (part head d_head)]: W_QKV (ln_w * x_hat), no biases, detached
    x_hat: Tensor  # [batch pos d_model]: the normalised residual, detached
    rstd: Tensor  # [batch pos 1]: 1 / sqrt(var + eps), detached


@dataclass
class SenderRun:
    """A forward pass that keeps what every sender writes, optionally recorded for a gradient split."""

    logits: Float[Tensor, "batch d_vocab"]  # final position
    embed: Float[Tensor, "batch pos d_model"]  # detached, as everything below
    z: list[Float[Tensor, "batch pos head d_head"]]
    mlp_out: list[Float[Tensor, "batch pos d_model"]]
    blocks: list[_Block] = field(default_factory=list)
    final: Tensor | None = None  # [batch d_model]: the final position's residual, an autograd node


def sender_run(
    w: PhiWeights,
    embed: Float[Tensor, "batch pos d_model"],
    *,
    replace: ReplaceFn | None = None,
    record: bool = False,
) -> SenderRun:
    """The Phi forward, keeping every layer's `z` and MLP output.

    `record=True` (under autograd) keeps the nodes `EdgeGradients.add` differentiates against."""
    n_pos = embed.shape[1]
    if record and not embed.requires_grad:
        embed = embed.detach().requires_grad_(True)  # a graph to differentiate, whatever the weights' flags
    cos, sin = w.rotary(torch.arange(n_pos, device=embed.device), embed.dtype)
    zs, mlp_outs, blocks = [], [], []
    resid = embed
    for layer in range(w.n_layers):
        h = layer_norm(resid, w.ln_w[layer], w.ln_b[layer], w.eps)
        fused = torch.nn.functional.linear(h, w.W_QKV[layer], w.b_QKV[layer])
        q, k, v = einops.rearrange(
            fused, "batch pos (part head d_head) -> part batch head pos d_head", part=3, head=w.n_heads
        )
        q, k = rotate(q, cos, sin, w.rotary_dim), rotate(k, cos, sin, w.rotary_dim)
        z, _ = attend(q, k, v, 0)
        mlp_in = h.view_as(h)  # its own autograd node: the MLP's share of the LayerNorm output's gradient
        mlp_out = mlp(w, layer, mlp_in)
        if replace is not None:
            z, mlp_out = replace(layer, z, mlp_out)
        zs.append(z.detach())
        mlp_outs.append(mlp_out.detach())
        if record:
            blocks.append(_record(w, layer, resid, fused, mlp_in))
        resid = resid + head_out(w, layer, z) + mlp_out
    final = resid[:, -1]
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
def _record(w: PhiWeights, layer: int, resid: Tensor, fused: Tensor, mlp_in: Tensor) -> _Block:
    x = _wide(resid)
    var, mean = torch.var_mean(x, -1, keepdim=True, correction=0)
    rstd = torch.rsqrt(var + w.eps)
    ln_b_through = torch.nn.functional.linear(w.ln_b[layer], w.W_QKV[layer])  # W_QKV ln_b
    projected = _wide(fused.detach()) - _wide(w.b_QKV[layer] + ln_b_through)
    return _Block(fused, mlp_in, projected, (x - mean) * rstd, rstd)


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
        nodes = [t for b in run.blocks for t in (b.fused, b.mlp_in)] + [run.final]
        grads = [
            torch.zeros_like(node) if grad is None else grad  # a node a substituted layer no longer uses
            for node, grad in zip(
                nodes, torch.autograd.grad(objective, nodes, allow_unused=True), strict=True
            )
        ]
        with torch.no_grad(), _matmul_precision(self.w.W_E.dtype):
            for layer, block in enumerate(run.blocks):
                self._split(layer, block, grads[2 * layer], grads[2 * layer + 1])
            if self.runs == 0:
                self.G.append(_wide(grads[-1]))
            else:
                self.G[-1].add_(grads[-1])
        self.runs += 1

    def _split(self, layer: int, block: _Block, d_fused: Tensor, d_mlp_in: Tensor) -> None:
        """Add one block's receiver-input gradients: G += rstd * (gw - x_hat * mean(gw x_hat)) and
        U += rstd * mean(gw), per receiver (q, k, v of every head, then the MLP)."""
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
        gw_mlp = _wide(d_mlp_in) * ln_w * block.rstd  # [batch pos d_model]
        U = torch.cat([U_heads, gw_mlp.mean(-1)[:, None]], 1)
        V = torch.cat([V_heads, (gw_mlp * block.x_hat).mean(-1)[:, None]], 1)
        rows = einops.rearrange(d_fused, "batch pos r d_head -> r (batch pos) d_head")
        if self.runs == 0:
            G = torch.empty(R + 1, batch, n_pos, d_model, device=W.device, dtype=W.dtype)
            torch.bmm(rows, W, out=G[:R].view(R, batch * n_pos, d_model))  # the heads' q, k, v
            G[R] = gw_mlp
            self.G.append(G)
            self.U.append(U)
        else:
            G = self.G[layer]
            G[:R].view(R, batch * n_pos, d_model).baddbmm_(rows, W)  # summed in place
            G[R].add_(gw_mlp)
            self.U[layer].add_(U)
        G.addcmul_(block.x_hat[None], einops.rearrange(V, "batch r pos -> r batch pos")[..., None], value=-1)

    @torch.no_grad()
    def scores(
        self, deltas: Float[Tensor, "batch sender pos d_model"]
    ) -> Float[Tensor, "batch sender receiver"]:
        """Mean over the added runs of `delta_s . dL/d input_r` for every sender and receiver input."""
        with _matmul_precision(self.w.W_E.dtype):
            return self._scores(deltas)

    def _scores(self, deltas: Tensor) -> Tensor:
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
