"""`attribution_graph`: the direct linear effects between the nodes of one prompt's replacement model.

Nodes, in circuit-tracer's order: every active transcoder feature (layer, position, feature), an error
node per (layer, position), the prompt's token embeddings, and the top output logits (at most
`max_logits`, the fewest whose probabilities sum to `logit_probability`). With attention patterns and
LayerNorm scales frozen (`interp.methods.graphs.replacement`) the residual stream is linear in what
writes into it, so a target's input (a feature's pre-activation; a logit's value minus the mean logit)
is exactly the sum of one term per source node plus bias terms (b_enc, b_dec, the attention and
LayerNorm biases, b_U):

    input(t) = sum_s A[t, s] + bias(t),    A[t, s] = write(s) . d input(t) / d resid(s)

where write(s) is what the source adds to the residual stream (a feature's activation x decoder row,
an error node's vector, a token's embedding) and resid(s) the residual stream where it adds it.

The gradients come from batched backward passes, as circuit-tracer computes them: for each batch of
targets one backward with each target's gradient injected at its own input (its encoder column, or its
logit's demeaned unembedding row); the gradient it leaves at every layer's residual output and at the
embedding, dotted with the sources' writes, is that target's row of A. Unlike circuit-tracer (which runs
the forward on `batch_size` copies of the prompt), one forward of one copy is kept and each backward is
vmapped over the batch (`is_grads_batched`): the same gradients, without the batch's forward or its
activations' memory. Every active feature and logit is a target once, so the backward passes number
ceil((features + logits) / batch_size): the floor `benchmarks/attribution_graph.py` measures against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.data.tokens import str_tokens
from interp.dictionaries.base import Dictionary
from interp.methods.graphs.replacement import ReplacementModel, replacement_model
from interp.model.loading import HookedPhi


@dataclass
class AttributionGraph:
    """An attribution graph: nodes [features, errors (layer-major), tokens, logits], `adjacency[target,
    source]` the direct effect of source on target (rows of errors and tokens are zero)."""

    tokens: Int[Tensor, " pos"]
    token_strings: list[str]
    active: Int[Tensor, "active 3"]  # (layer, pos, feature) of each feature node
    activations: Float[Tensor, " active"]
    logit_tokens: Int[Tensor, " logit"]
    logit_strings: list[str]
    logit_probabilities: Float[Tensor, " logit"]
    adjacency: Float[Tensor, "node node"]
    node_inputs: Float[Tensor, " node"]  # features: activation; logits: logit - mean logit; else 0
    bias: Float[Tensor, " node"]  # the part of each input no node explains (the bias terms)
    n_layers: int
    prompt: str = ""
    transcoders: list[str] = field(default_factory=list)  # where each layer's transcoder came from
    n_active: int = -1  # active features of the prompt (more than n_features with max_feature_nodes)

    @property
    def n_pos(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.active.shape[0])

    @property
    def n_errors(self) -> int:
        return self.n_layers * self.n_pos

    @property
    def n_logits(self) -> int:
        return int(self.logit_tokens.shape[0])

    @property
    def n_nodes(self) -> int:
        return self.n_features + self.n_errors + self.n_pos + self.n_logits

    def node_kind(self, index: int) -> str:
        """'feature', 'error', 'token' or 'logit'."""
        bounds = self.bounds()
        for kind in ("feature", "error", "token", "logit"):
            if bounds[kind].start <= index < bounds[kind].stop:
                return kind
        raise IndexError(f"node {index} is not in this graph of {self.n_nodes} nodes")

    def bounds(self) -> dict[str, range]:
        """Each node kind's index range."""
        f, e, t = self.n_features, self.n_errors, self.n_pos
        return {
            "feature": range(0, f),
            "error": range(f, f + e),
            "token": range(f + e, f + e + t),
            "logit": range(f + e + t, self.n_nodes),
        }

    def node_layer_pos(self, index: int) -> tuple[int, int]:
        """(layer, position) of a node; tokens sit at layer -1, logits at n_layers (the last position)."""
        kind = self.node_kind(index)
        start = self.bounds()[kind].start
        if kind == "feature":
            layer, pos, _ = self.active[index].tolist()
            return layer, pos
        if kind == "error":
            return divmod(index - start, self.n_pos)
        if kind == "token":
            return -1, index - start
        return self.n_layers, self.n_pos - 1

    def label(self, index: int) -> str:
        """A short name: `L1 F23 @4`, `err L1 @4`, `tok "cat" @4`, `logit "dog"`."""
        kind = self.node_kind(index)
        start = self.bounds()[kind].start
        if kind == "feature":
            layer, pos, feature = self.active[index].tolist()
            return f"L{layer} F{feature} @{pos}"
        if kind == "error":
            layer, pos = divmod(index - start, self.n_pos)
            return f"err L{layer} @{pos}"
        if kind == "token":
            return f"tok {self.token_strings[index - start]!r} @{index - start}"
        return f"logit {self.logit_strings[index - start]!r}"


@torch.no_grad()
def salient_logits(
    logits: Float[Tensor, " d_vocab"], max_logits: int = 10, logit_probability: float = 0.95
) -> tuple[Int[Tensor, " logit"], Float[Tensor, " logit"]]:
    """The top logits by probability: at most `max_logits`, the fewest reaching `logit_probability`."""
    if isinstance(max_logits, bool) or not isinstance(max_logits, int) or max_logits < 1:
        raise InputError(f"max_logits={max_logits!r} is not allowed; it must be a positive integer.")
    if not 0 < logit_probability <= 1:
        raise InputError(f"logit_probability={logit_probability!r} is not allowed; it must be in (0, 1].")
    probs = torch.softmax(logits.float(), dim=-1)
    top_p, top_idx = probs.topk(min(max_logits, probs.numel()))
    needed = (
        int(torch.searchsorted(top_p.cumsum(0), torch.tensor(logit_probability, device=top_p.device))) + 1
    )
    return top_idx[:needed], top_p[:needed]


def tokens_of(model: HookedPhi, prompt: str | Sequence[int] | Tensor) -> Int[Tensor, " pos"]:
    """One prompt's token ids: a string (tokenized without special tokens, as the pairs are), a list of
    ids or a 1-D tensor."""
    if isinstance(prompt, str):
        if not prompt:
            raise InputError("the prompt is empty; give at least one token.")
        ids = model.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return torch.tensor(ids, dtype=torch.long)
    tokens = torch.as_tensor(prompt, dtype=torch.long)
    if tokens.dim() == 2 and tokens.shape[0] == 1:
        tokens = tokens[0]
    if tokens.dim() != 1 or tokens.numel() == 0:
        raise InputError(f"a prompt is a string or one row of token ids, not shape {tuple(tokens.shape)}.")
    return tokens


def attribution_graph(
    model: HookedPhi,
    prompt: str | Sequence[int] | Tensor,
    transcoders: Sequence[Dictionary],
    *,
    max_logits: int = 10,
    logit_probability: float = 0.95,
    batch_size: int = 64,
    max_feature_nodes: int | None = None,
    transcoder_names: Sequence[str] | None = None,
) -> AttributionGraph:
    """The attribution graph of `prompt` (its last position's next-token logits) through `transcoders`
    (one per layer, in order), unpruned; prune with `interp.methods.graphs.pruning.prune_graph`.
    `max_feature_nodes`: only the most influential features become nodes (see `attribute`)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size={batch_size!r} is not allowed; it must be a positive integer.")
    tokens = tokens_of(model, prompt)
    d_vocab = model.cfg.d_vocab
    if int(tokens.max()) >= d_vocab or int(tokens.min()) < 0:
        raise InputError(f"token ids must be in 0..{d_vocab - 1}; got {tokens.tolist()}.")
    rm = replacement_model(model, tokens, transcoders)
    logit_tokens, logit_probs = salient_logits(rm.logits[-1], max_logits, logit_probability)
    graph = attribute(
        rm, logit_tokens, logit_probs, batch_size=batch_size, max_feature_nodes=max_feature_nodes
    )
    graph.token_strings = str_tokens(model.tokenizer, tokens)
    graph.logit_strings = str_tokens(model.tokenizer, logit_tokens.cpu())
    graph.prompt = prompt if isinstance(prompt, str) else model.tokenizer.decode(tokens.tolist())
    if transcoder_names is not None:
        graph.transcoders = [str(name) for name in transcoder_names]
    return graph


def logit_vectors(
    rm: ReplacementModel, logit_tokens: Int[Tensor, " logit"]
) -> Float[Tensor, "logit d_model"]:
    """Each logit's demeaned unembedding row: its logit minus the mean logit is this . final LN output."""
    W_U = rm.weights.W_U.float()
    return W_U[logit_tokens] - W_U.mean(0)


def attribute(
    rm: ReplacementModel,
    logit_tokens: Int[Tensor, " logit"],
    logit_probabilities: Float[Tensor, " logit"],
    *,
    batch_size: int = 64,
    max_feature_nodes: int | None = None,
) -> AttributionGraph:
    """The graph of a replacement model with the given logit nodes (see the module docstring).

    `max_feature_nodes`: keep only that many features, the most influential ones, found as circuit-tracer
    does: the logits' rows first, then repeatedly the unvisited features of most influence on the logits
    through the rows computed so far (`UPDATE_EVERY` batches between re-rankings). The features left out
    are no nodes: a node's edges and bias terms then fall short of its input by what they sent it."""
    if max_feature_nodes is not None and (
        isinstance(max_feature_nodes, bool) or not isinstance(max_feature_nodes, int) or max_feature_nodes < 0
    ):
        raise InputError(
            f"max_feature_nodes={max_feature_nodes!r} is not allowed; use None or an integer >= 0."
        )
    n_all, n_layers, n_pos = int(rm.active.shape[0]), rm.n_layers, rm.n_pos
    device = rm.device
    logit_tokens = logit_tokens.to(device)
    n_logits = int(logit_tokens.shape[0])
    n_sources = n_all + n_layers * n_pos + n_pos  # columns of every row: features, errors, tokens
    writes = _Writes(rm, rm.decoder_vectors().to(device))  # the features' writes, by layer and position
    targets_layer = torch.cat([rm.active[:, 0], torch.full((n_logits,), n_layers)])
    targets_pos = torch.cat([rm.active[:, 1], torch.full((n_logits,), n_pos - 1)])
    inject = torch.cat([rm.encoder_vectors().to(device), logit_vectors(rm, logit_tokens)])
    pass_ = _FrozenPass(rm, batch_size)

    def rows_of(targets: Int[Tensor, " batch"]) -> Float[Tensor, "batch node"]:  # features, then logits
        out = torch.zeros(len(targets), n_sources)
        for start in range(0, len(targets), batch_size):
            chosen = targets[start : start + batch_size]
            grads = pass_.backward(targets_layer[chosen], targets_pos[chosen], inject[chosen])
            out[start : start + len(chosen)] = _rows(rm, grads, writes, len(chosen), n_sources).detach().cpu()
        return out

    logit_rows = rows_of(torch.arange(n_all, n_all + n_logits))
    if max_feature_nodes is None or max_feature_nodes >= n_all:
        selected = torch.arange(n_all)
        feature_rows = rows_of(selected)
    else:
        selected, feature_rows = _most_influential(
            rows_of, logit_rows, logit_probabilities.float().cpu(), n_all, max_feature_nodes, batch_size
        )
    columns = torch.cat([selected, torch.arange(n_all, n_sources)])
    n_feat = len(selected)
    n_nodes = n_feat + n_layers * n_pos + n_pos + n_logits
    adjacency = torch.zeros(n_nodes, n_nodes)
    adjacency[:n_feat, : len(columns)] = feature_rows[:, columns]
    adjacency[n_nodes - n_logits :, : len(columns)] = logit_rows[:, columns]
    node_inputs, bias = _inputs_and_bias(rm, logit_tokens, n_all + n_layers * n_pos + n_pos + n_logits)
    keep = torch.cat([selected, torch.arange(n_all, n_all + n_layers * n_pos + n_pos + n_logits)])
    return AttributionGraph(
        tokens=rm.tokens.cpu(),
        token_strings=[str(t) for t in rm.tokens.tolist()],
        active=rm.active[selected].clone(),
        activations=rm.activations.cpu()[selected],
        logit_tokens=logit_tokens.cpu(),
        logit_strings=[str(t) for t in logit_tokens.tolist()],
        logit_probabilities=logit_probabilities.float().cpu(),
        adjacency=adjacency,
        node_inputs=node_inputs[keep],
        bias=bias[keep],
        n_layers=n_layers,
        n_active=n_all,
    )


UPDATE_EVERY = 4  # batches of features attributed between re-rankings by influence (circuit-tracer's)


def _most_influential(
    rows_of,
    logit_rows: Float[Tensor, "logit node"],
    logit_probabilities: Float[Tensor, " logit"],
    n_all: int,
    cap: int,
    batch_size: int,
) -> tuple[Int[Tensor, " active"], Float[Tensor, "active node"]]:
    """The `cap` features of most influence on the logits (sorted) and their rows, visited in rounds."""
    visited = torch.zeros(n_all, dtype=torch.bool)
    order: list[Tensor] = []
    rows: list[Tensor] = []
    while int(visited.sum()) < cap:
        feature_rows = torch.cat(rows) if rows else logit_rows[:0]
        ranked = _partial_influence(
            logit_rows, logit_probabilities, feature_rows, torch.cat(order) if order else None
        )
        ranked = ranked[:n_all].argsort(descending=True, stable=True)
        pending = ranked[~visited[ranked]][: min(UPDATE_EVERY * batch_size, cap - int(visited.sum()))]
        pending = (
            pending.sort().values
        )  # by layer (as `active` is): a batch's backward stops at its top layer
        rows.append(rows_of(pending))
        order.append(pending)
        visited[pending] = True
    order_all, rows_all = torch.cat(order), torch.cat(rows)
    sort = order_all.argsort()
    return order_all[sort], rows_all[sort]


def _partial_influence(
    logit_rows: Float[Tensor, "logit node"],
    logit_probabilities: Float[Tensor, " logit"],
    feature_rows: Float[Tensor, "active node"],
    features: Int[Tensor, " active"] | None,
) -> Float[Tensor, " node"]:
    """Each source's influence on the logits through the rows known so far (|rows| normalised to sum 1)."""

    def share(rows: Float[Tensor, "batch node"]) -> Float[Tensor, "batch node"]:
        absolute = rows.abs()
        return absolute / absolute.sum(1, keepdim=True).clamp_min(1e-10)

    current = logit_probabilities @ share(logit_rows)
    total = current.clone()
    if features is None:
        return total
    matrix = share(feature_rows)
    for _ in range(len(features) + 1):  # edges go down the layers: the series ends
        current = current[features] @ matrix
        if not current.any():
            break
        total += current
    return total


class _FrozenPass:
    """One forward of the frozen model (one copy of the prompt), kept for many batched backwards: each
    target's backward is one vmapped slice of `torch.autograd.grad(..., is_grads_batched=True)`, so the
    forward and its saved activations are not multiplied by the batch."""

    def __init__(self, rm: ReplacementModel, batch: int):
        self.rm, self.batch = rm, batch
        consts = [
            (write + error).to(rm.dtype) for write, error in zip(rm.feature_writes(), rm.errors, strict=True)
        ]

        def mlp(layer: int, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "*batch pos d_model"]:
            tc = rm.transcoders[layer]
            if tc.W_skip is None:
                return consts[layer]
            return consts[layer] + tc.skip(x).to(rm.dtype)

        self.keep: dict[str, Tensor] = {}
        with torch.enable_grad():
            self.embed = rm.embed(1).detach().clone().requires_grad_(True)
            self.final = rm.run(self.embed, mlp, frozen=True, keep=self.keep)
        self.inputs = [self.keep[f"blocks.{layer}.{rm.input_points[layer]}"] for layer in range(rm.n_layers)]
        self.resid = [self.keep[f"blocks.{layer}.hook_resid_post"] for layer in range(rm.n_layers)]

    def backward(
        self,
        layers: Int[Tensor, " batch"],
        positions: Int[Tensor, " batch"],
        vectors: Float[Tensor, "batch d_model"],
    ) -> dict[str, list[Tensor | None] | Tensor]:
        """Gradients [batch pos d_model] at every layer's residual output (below the batch's top target
        layer) and at the embedding, target b's injected at its input: `vectors[b]` at position
        `positions[b]` of layer `layers[b]`'s transcoder input (n_layers: the final LayerNorm's output)."""
        n = int(layers.shape[0])
        rows = torch.arange(n)
        outputs, grad_outputs = [], []
        for layer in layers.unique().tolist():
            chosen = layers == layer
            target = self.final if layer == self.rm.n_layers else self.inputs[layer]
            injected = torch.zeros(n, *target.shape, dtype=target.dtype, device=target.device)
            injected[rows[chosen], 0, positions[chosen]] = vectors[chosen].to(target.dtype)
            outputs.append(target)
            grad_outputs.append(injected)
        top = int(layers.max())
        sources = self.resid[: min(top, self.rm.n_layers)] + [self.embed]
        with torch.enable_grad():
            grads = torch.autograd.grad(
                outputs, sources, grad_outputs, retain_graph=True, allow_unused=True, is_grads_batched=True
            )
        return {"resid": [g if g is None else g[:, 0] for g in grads[:-1]], "embed": grads[-1][:, 0]}


class _Writes:
    """The sources' writes arranged for one batched matmul per layer: each layer's active features padded
    per position to `slots` (the most any position has), so a target's edges from a layer's features are
    its gradient at each position times the writes there."""

    def __init__(self, rm: ReplacementModel, decoder: Float[Tensor, "active d_model"]):
        self.layers = []
        d = decoder.shape[1]
        for s in rm.layer_slices():
            positions = rm.active[s, 1].to(decoder.device)
            if not len(positions):
                self.layers.append(None)
                continue
            counts = torch.bincount(positions, minlength=rm.n_pos)
            first = torch.cumsum(counts, 0) - counts  # where each position's features start
            slot = torch.arange(len(positions), device=decoder.device) - first[positions]
            padded = torch.zeros(rm.n_pos, int(counts.max()), d, device=decoder.device)
            padded[positions, slot] = decoder[s]
            self.layers.append((s, positions, slot, padded))


def _rows(
    rm: ReplacementModel, grads: dict, writes: _Writes, n: int, n_sources: int
) -> Float[Tensor, "batch node"]:
    """Each target's row of A over the sources (features, errors, tokens) from its gradients."""
    device = rm.errors.device
    out = torch.zeros(n, n_sources, device=device)
    n_feat, n_pos = int(rm.active.shape[0]), rm.n_pos
    for layer in range(rm.n_layers):
        grad = grads["resid"][layer] if layer < len(grads["resid"]) else None
        if grad is None:
            continue
        grad = grad.float()
        if writes.layers[layer] is not None:
            s, positions, slot, padded = writes.layers[layer]
            # [pos, batch, d_model] @ [pos, d_model, slots] -> [pos, batch, slots]
            per_position = torch.bmm(einops.rearrange(grad, "b p d -> p b d"), padded.transpose(1, 2))
            out[:, s] = per_position[positions, :, slot].T
        errors = n_feat + layer * n_pos
        out[:, errors : errors + n_pos] = torch.einsum("bpd,pd->bp", grad, rm.errors[layer])
    embed = rm.weights.W_E.detach()[rm.tokens].float()
    tokens = n_feat + rm.n_layers * n_pos
    out[:, tokens : tokens + n_pos] = torch.einsum("bpd,pd->bp", grads["embed"].float(), embed)
    return out


@torch.no_grad()
def _inputs_and_bias(
    rm: ReplacementModel, logit_tokens: Int[Tensor, " logit"], n_nodes: int
) -> tuple[Float[Tensor, " node"], Float[Tensor, " node"]]:
    """Each target's input in the prompt's forward (activation; logit minus mean logit) and its bias:
    its input in the frozen model with every source at zero (no features, errors or embeddings)."""
    n_feat, n_logits = int(rm.active.shape[0]), int(logit_tokens.shape[0])
    inputs, bias = torch.zeros(n_nodes), torch.zeros(n_nodes)
    inputs[:n_feat] = rm.activations.cpu()
    logits = rm.logits[-1].float()
    inputs[n_nodes - n_logits :] = (logits[logit_tokens] - logits.mean()).cpu()
    keep: dict[str, Tensor] = {}
    zero_writes = rm.feature_writes(torch.zeros_like(rm.activations)[None])

    def mlp(layer: int, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        return (zero_writes[layer] + rm.transcoders[layer].skip(x)).to(x.dtype)

    final = rm.run(torch.zeros_like(rm.embed()), mlp, frozen=True, keep=keep)[0, -1].float()
    encoder = rm.encoder_vectors()
    for layer, s in enumerate(rm.layer_slices()):
        x = keep[f"blocks.{layer}.{rm.input_points[layer]}"][0].float()
        b_enc = rm.transcoders[layer].b_enc.detach().float()[rm.active[s, 2]]
        positions = rm.active[s, 1].to(x.device)
        bias[s] = ((x[positions] * encoder[s]).sum(-1) + b_enc).cpu()
    b_U = rm.weights.b_U
    b_U = torch.zeros(rm.weights.W_U.shape[0], device=final.device) if b_U is None else b_U.float()
    demeaned = logit_vectors(rm, logit_tokens) @ final + b_U[logit_tokens] - b_U.mean()
    bias[n_nodes - n_logits :] = demeaned.cpu()
    return inputs, bias
