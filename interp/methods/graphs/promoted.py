"""What each feature node of a graph writes towards the output: the tokens its decoder row promotes and
suppresses most through the unembedding (the final LayerNorm's weight applied, its centring too; its
scale left out, as for direct logit attribution), a card to show beside the node.

This reads the weights only; a feature's top activations over a dataset are `interp.dictionaries`'
business (feature cards), not the graph's.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch

from interp.data.tokens import str_tokens
from interp.dictionaries.base import Dictionary
from interp.engine.weights import PhiWeights
from interp.methods.graphs.attribution import AttributionGraph
from interp.model.loading import HookedPhi


@torch.no_grad()
def promoted_tokens(
    model: HookedPhi,
    transcoders: Sequence[Dictionary],
    graph: AttributionGraph,
    k: int = 5,
    only: Collection[str] | None = None,
) -> dict[str, dict[str, list[str]]]:
    """node id (circuit-tracer's `{layer}_{feature}_{pos}`) -> {"promotes": [...], "suppresses": [...]},
    `k` tokens each, for every feature node of `graph` (or those whose ids are in `only`)."""
    w = PhiWeights.from_model(model)
    n_real = min(len(model.tokenizer), w.W_U.shape[0])  # ids beyond the tokenizer's belong to no token
    ids = [f"{layer}_{feature}_{pos}" for layer, pos, feature in graph.active.tolist()]
    chosen = [i for i, node_id in enumerate(ids) if only is None or node_id in only]
    cards: dict[str, dict[str, list[str]]] = {}
    for start in range(0, len(chosen), CHUNK):
        part = chosen[start : start + CHUNK]
        rows = torch.stack(
            [transcoders[int(graph.active[i, 0])].W_dec.detach()[int(graph.active[i, 2])] for i in part]
        ).to(w.W_U.device, w.W_U.dtype)
        directions = (rows - rows.mean(-1, keepdim=True)) * w.ln_f_w
        logits = (directions @ w.W_U[:n_real].T).float()
        logits -= logits.mean(-1, keepdim=True)
        top, bottom = logits.topk(k, dim=-1).indices.cpu(), (-logits).topk(k, dim=-1).indices.cpu()
        for row, i in enumerate(part):
            cards[ids[i]] = {
                "promotes": str_tokens(model.tokenizer, top[row]),
                "suppresses": str_tokens(model.tokenizer, bottom[row]),
            }
    return cards


CHUNK = 256  # features per unembedding matmul
