"""Exact edge patching: the effect of one edge, measured by running the model, for every edge at once.

The effect of edge `s -> r` is the metric when *only that edge* carries the sender's value from the
source run into that receiver input, every other path as in the base run, minus the base run's metric.
Noising (the default): base = clean run, source = corrupted run, so a large negative effect marks an
edge the behaviour needs. Denoising is the mirror (base = corrupted, source = clean).

How it is computed exactly and fast: the receiver input is the base run's residual stream plus the
sender's change (`source_s - base_s`, at every position). For a head's q, k or v input, that head is
recomputed with the changed input (its own LayerNorm, its own projection, the base run's other two
inputs); for an MLP, the MLP is recomputed; for the logits, the final residual is changed. The change
of that one component's output then enters the residual stream after its block, and the batched
engine (`interp.engine.batched`) runs the later blocks for many edges per block call, only at the
positions and layers that can differ (from the first position where clean and corrupted tokens
differ). A test holds every edge equal to an independent reference that changes one receiver input at
a time through the bridge's hooks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Literal

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptPairs
from interp.engine.batched import Variant, run_variants
from interp.engine.forward import PhiWeights, RunCache, attend, layer_norm, mlp, rotate
from interp.methods.circuits.graph import PARTS, Graph, Receiver
from interp.methods.circuits.scores import EdgeScores, stack_scores
from interp.methods.contrastive import Direction, contrast
from interp.model.loading import HookedPhi

DEFAULT_MEMORY_BUDGET = 2 * 1024**3


@torch.no_grad()
def sender_outputs(w: PhiWeights, run: RunCache) -> Float[Tensor, "sender batch pos d_model"]:
    """What every sender writes in `run`: the embedding, each head's `z @ W_O`, each MLP's output."""
    outputs = [run.resid_pre[0]]
    for layer in range(w.n_layers):
        heads = einops.einsum(
            run.z[layer], w.W_O[layer], "batch pos head d_head, head d_head d_model -> head batch pos d_model"
        )
        outputs += list(heads.unbind(0)) + [run.mlp_out[layer]]
    return torch.stack(outputs)


def _adds(change: Float[Tensor, "batch pos d_model"]) -> Callable[[Tensor], Tensor]:
    def make(resid: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        return resid + change

    return make


def receiver_changes(
    w: PhiWeights, base: RunCache, receiver: Receiver, deltas: Float[Tensor, "sender batch pos d_model"]
) -> Float[Tensor, "sender batch pos d_model"]:
    """For each sender's change in `deltas`: how the receiver's output (what enters the residual after its
    block) changes when only this receiver input sees it. For the logits, the change itself."""
    layer = receiver.layer
    if receiver.node == "logits":
        return deltas
    x = layer_norm(base.resid_pre[layer][None] + deltas, w.ln_w[layer], w.ln_b[layer], w.eps)
    if receiver.part is None:  # an MLP
        return mlp(w, layer, x) - base.mlp_out[layer][None]
    head, index = receiver.head, PARTS.index(receiver.part)
    W = einops.rearrange(
        w.W_QKV[layer], "(part head d_head) d_model -> part head d_head d_model", part=3, head=w.n_heads
    )
    b = einops.rearrange(w.b_QKV[layer], "(part head d_head) -> part head d_head", part=3, head=w.n_heads)
    changed = torch.nn.functional.linear(x, W[index, head], b[index, head])  # sender batch pos d_head
    if receiver.part in ("q", "k"):
        n_pos = x.shape[-2]
        cos, sin = w.rotary(torch.arange(n_pos, device=x.device), x.dtype)
        changed = rotate(changed, cos, sin, w.rotary_dim)
    q, k, v = (getattr(base, part)[layer][:, head][None] for part in PARTS)  # 1 batch pos d_head
    q, k, v = (changed if part == receiver.part else t for part, t in zip(PARTS, (q, k, v), strict=True))
    z, _ = attend(q[:, :, None], k[:, :, None], v[:, :, None], 0)  # sender batch pos 1 d_head
    dz = z[..., 0, :] - base.z[layer][:, :, head][None]
    return dz @ w.W_O[layer][head]


@torch.no_grad()
def edge_patch(
    model: HookedPhi,
    pairs: PromptPairs,
    metric: MetricKind | Metric = "logit_diff",
    *,
    direction: Direction = "noising",
    edges: Sequence[str] | None = None,
    reduce: Literal["mean", "none"] = "mean",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> EdgeScores:
    """Exact effect (patched metric - base metric) of every edge, or of the named `edges` only.

    Edges not asked for get 0 and `extra["scored"]` False (e.g. score the top-k edges of EAP-IG on Phi-2).
    """
    core = contrast(model, pairs, metric, direction=direction)
    w = core.weights
    graph = Graph.of(w.n_layers, w.n_heads)
    chosen = range(graph.n_edges) if edges is None else [graph.edge_position(name) for name in edges]
    by_receiver: dict[int, list[tuple[int, int]]] = defaultdict(list)  # receiver -> (edge, sender)
    for position in chosen:
        sender, receiver = graph.edge_index[position].tolist()
        by_receiver[receiver].append((position, sender))
    parts = []
    for group in core.groups:
        base, source = core.base(group), core.source(group)
        deltas = sender_outputs(w, source) - sender_outputs(w, base)
        base_metric = core.measure(base.final_logits, group.index)
        first = core.first_difference(group)  # every sender's change is zero before it
        values = torch.zeros(graph.n_edges, len(group.index))
        by_entry: dict[int, list[tuple[int, int, int]]] = defaultdict(
            list
        )  # entry -> (receiver, edge, sender)
        for receiver_index, items in by_receiver.items():
            entry = min(graph.receivers[receiver_index].layer + 1, w.n_layers)  # after the receiver's block
            by_entry[entry] += [(receiver_index, position, sender) for position, sender in items]
        per_sender = _sender_chunk(w, base, memory_budget)
        for entry, items in sorted(by_entry.items()):
            # every edge into one layer's receivers enters the residual at the same block: one engine call
            # per chunk, with no staggering, so edges of many receivers share every block call
            for start in range(0, len(items), per_sender):
                chunk = items[start : start + per_sender]
                variants = []
                for receiver_index in dict.fromkeys(r for r, _, _ in chunk):
                    mine = [(position, sender) for r, position, sender in chunk if r == receiver_index]
                    changes = receiver_changes(
                        w, base, graph.receivers[receiver_index], deltas[[s for _, s in mine]]
                    )
                    variants += [
                        Variant((position,), entry, first, _adds(change[:, first:]))
                        for (position, _), change in zip(mine, changes, strict=True)
                    ]
                for (position,), logits in run_variants(w, base, variants, memory_budget).items():
                    values[position] = (core.measure(logits, group.index) - base_metric).float().cpu()
        parts.append((group.index, values))
    values = stack_scores(parts, graph.n_edges, len(pairs))
    scored = torch.zeros(graph.n_edges, dtype=torch.bool)
    scored[list(chosen)] = True
    return EdgeScores(
        graph,
        values.mean(-1) if reduce == "mean" else values,
        "edge_patch",
        direction,
        core.metric.kind,
        core.clean_value,
        core.corrupted_value,
        per_prompt=reduce == "none",
        extra={"scored": scored, "value": "patched metric - base metric", "d_model": w.W_E.shape[1]},
    )


CPU_EDGES_PER_CALL = (
    16  # on a CPU, cache-sized batches beat big ones (mid config: 16 -> 266 edges/s, 128 -> 197)
)


def _sender_chunk(w: PhiWeights, base: RunCache, memory_budget: int) -> int:
    """How many edges to run per engine call: a few copies of the residual each, within the budget."""
    batch, n_pos, d_model = base.resid_pre[0].shape
    per_edge = 6 * batch * n_pos * d_model * base.resid_pre[0].element_size()
    chunk = max(1, memory_budget // max(1, per_edge))
    return chunk if base.resid_pre[0].is_cuda else min(chunk, CPU_EDGES_PER_CALL)
