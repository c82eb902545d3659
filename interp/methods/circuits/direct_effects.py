"""Every edge of any `Graph` (heads, MLPs, feature nodes, or all of them) by EAP or EAP-IG, from direct
effects: the scorer feature circuits and head circuits share.

The forward is run with every sender's output replaced by a leaf holding its own value (the input
embedding, each layer's `attn.hook_result`, `hook_mlp_out`, each spliced dictionary's `hook_acts` and
`hook_error`), while every receiver's input is still *computed* from the leaves: the Jacobian of a
receiver with respect to a leaf is then the sender's direct effect on it, through no other node. With
g_r the metric's total gradient at receiver r's read point (a head's q, k or v, an MLP's output, a
latent, an error term; the metric itself for the logits):

    edge s -> r = (source_s - base_s) . d (g_r . computed_r) / d leaf_s

summed over positions and width, per prompt; the mean over prompts. EAP takes the gradients at the base
run; EAP-IG averages them over `steps` runs on the straight line from the base run's embeddings to the
source run's (`integration_points`). For a head receiver this is EAP's `delta_s . d metric / d input_r`
(its input is the sum of its senders), so on the head graph it equals `edge_attribution.eap` (tested);
on a graph of feature nodes it is Marks et al.'s edge score (`interp.methods.features.circuits`). One
backward per receiver: the general path, for graphs with feature nodes; the head graph alone has the
fast one (`edge_attribution`).

`score_nodes` scores the nodes themselves, each by its total effect (source_s - base_s) . d metric /
d output_s, the gradient through every path (attribution patching of the node: for a latent,
`feature_attribution`'s summed over positions), from one backward per point; it builds no edge table,
so feature circuits score every latent of their dictionaries with it before choosing the nodes of the
graph whose edges `score_graph` scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import groupby
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp.base.errors import InputError
from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptPairs
from interp.dictionaries.base import Dictionary
from interp.engine.edits import Keep, Replace
from interp.engine.forward import PhiWeights, forward
from interp.methods.circuits.edge_attribution import Rule, gradient_points
from interp.methods.circuits.graph import Graph, Node, Receiver
from interp.methods.circuits.scores import EdgeScores
from interp.methods.contrastive import Direction, base_and_source, contrast
from interp.model.loading import HookedPhi

Method = Literal["eap", "eap_ig"]


def check_dictionaries_for_circuits(dictionaries: Dictionary | Sequence[Dictionary]) -> list[Dictionary]:
    """The dictionaries as a list, refused unless non-empty Dictionary objects without skip paths."""
    if isinstance(dictionaries, Dictionary):
        dictionaries = [dictionaries]
    if isinstance(dictionaries, str) or not isinstance(dictionaries, Sequence) or not dictionaries:
        raise InputError("feature circuits take a Dictionary or a non-empty list of them.")
    for d in dictionaries:
        if not isinstance(d, Dictionary):
            raise InputError(f"feature circuits take Dictionary objects, not {type(d).__name__}.")
        if d.W_skip is not None:
            raise InputError(
                f"{d!r} is a skip transcoder: its skip path would be a path with no node in the feature "
                "graph; use SAEs or transcoders without W_skip."
            )
    return list(dictionaries)


def _write_point(node: Node) -> tuple[str, tuple]:
    """(hook name, index into it) of what a sender writes; "input" is the embedding."""
    if node.kind == "input":
        return "input", ()
    if node.kind == "head":
        return f"blocks.{node.layer}.attn.hook_result", (..., node.head, slice(None))
    if node.kind == "mlp":
        return f"blocks.{node.layer}.hook_mlp_out", ()
    if node.kind == "latent":
        return f"{node.site.writes}.dict.hook_acts", (..., node.latent)
    return f"{node.site.writes}.dict.hook_error", ()


def _read_point(receiver: Receiver) -> tuple[str, tuple] | None:
    """(hook name, index) whose value a receiver computes from its senders; None for the logits."""
    if receiver.node == "logits":
        return None
    if receiver.site is not None:
        if receiver.latent is None:
            return f"{receiver.site.writes}.dict.hook_error", ()
        return f"{receiver.site.writes}.dict.hook_acts", (..., receiver.latent)
    if receiver.part is not None:
        return f"blocks.{receiver.layer}.attn.hook_{receiver.part}", (..., receiver.head, slice(None))
    return f"blocks.{receiver.layer}.hook_mlp_out", ()


def _leaf_points(graph: Graph) -> list[str]:
    """Every point held as a leaf: each sender's (a head layer's `hook_result` once), and every site's
    latents and error term (the latents that are not nodes still pass nothing on)."""
    points = [_write_point(node)[0] for node in graph.nodes[1:]]
    points += [f"{site.writes}.dict.{p}" for site in graph.sites for p in ("hook_acts", "hook_error")]
    return list(dict.fromkeys(points))


def _summed(product: Float[Tensor, "batch ..."], index: tuple) -> Float[Tensor, " batch"]:
    """[batch]: a sender's slice of delta * gradient, summed over everything but the batch."""
    picked = product[index] if index else product
    return picked.reshape(picked.shape[0], -1).sum(-1)


@dataclass
class _Runs:
    """Both runs' values at a graph's leaf points, the metric (and its baselines) and the weights."""

    core: object  # the contrastive core (`contrast`)
    w: PhiWeights
    points: list[str]
    base_embed: Float[Tensor, "batch pos d_model"]
    source_embed: Float[Tensor, "batch pos d_model"]
    deltas: dict[str, Tensor]  # source - base at every point, and at "input"

    def embed_at(self, alpha: float) -> Float[Tensor, "batch pos d_model"]:
        return self.base_embed + alpha * (self.source_embed - self.base_embed)


def _prepare(
    stack: ExitStack,
    model: HookedPhi,
    pairs: PromptPairs,
    graph: Graph,
    metric: MetricKind | Metric,
    dictionaries: Dictionary | Sequence[Dictionary],
    direction: Direction,
    what: str,
) -> _Runs:
    """The checks every scorer of a graph makes, the splice (entered on `stack`) and both runs."""
    from interp.methods.features.patching import spliced_for

    if not pairs.same_length:
        raise InputError(f"{what} sums over positions: give prompts of one token length.")
    if (model.cfg.n_layers, model.cfg.n_heads) != (graph.n_layers, graph.n_heads):
        raise InputError(
            f"{graph} is not this model's ({model.cfg.n_layers} layers x {model.cfg.n_heads} heads)"
        )
    if graph.features:
        dicts = check_dictionaries_for_circuits(dictionaries)
        spliced = spliced_for(stack, model, dicts, True)
        have = {spliced.entry(d).writes: spliced.entry(d).reads for d in dicts}
        for site in graph.sites:
            if have.get(site.writes) != site.reads:
                raise InputError(
                    f"no dictionary given reads {site.reads!r} and writes {site.writes!r} (given: {have})"
                )
    core = contrast(model, pairs, metric, direction=direction, keep="logits")
    w = PhiWeights.from_model(model)
    tokens = base_and_source(pairs.clean_tokens, pairs.corrupted_tokens, direction)
    base_embed, source_embed = (w.W_E[t.to(w.W_E.device)].detach() for t in tokens)
    points = _leaf_points(graph)
    base, source = (_values(w, embed, points) for embed in (base_embed, source_embed))
    deltas = {p: source[p] - base[p] for p in points} | {"input": source_embed - base_embed}
    return _Runs(core, w, points, base_embed, source_embed, deltas)


def score_graph(
    model: HookedPhi,
    pairs: PromptPairs,
    graph: Graph,
    metric: MetricKind | Metric = "logit_diff",
    *,
    dictionaries: Dictionary | Sequence[Dictionary] = (),
    method: Method = "eap",
    direction: Direction = "noising",
    steps: int = 5,
    rule: Rule = "midpoint",
) -> EdgeScores:
    """Every edge of `graph` on `pairs` (module docstring); the graph's feature sites are the
    `dictionaries`' (spliced in with their error terms for the call, or as the model is spliced)."""
    direction, alphas = gradient_points(method, steps, rule, direction)
    with ExitStack() as stack:
        runs = _prepare(stack, model, pairs, graph, metric, dictionaries, direction, "score_graph")
        total = torch.zeros(len(pairs), graph.n_forward, graph.n_backward)
        for alpha in alphas:
            total += _at(runs.w, graph, runs.core, runs.embed_at(alpha), runs.points, runs.deltas)
        values = (total / len(alphas)).mean(0)[graph.mask]
    core = runs.core
    return EdgeScores(
        graph,
        values,
        method,
        direction,
        core.metric.kind,
        core.clean_value,
        core.corrupted_value,
        extra={"estimate_of": "patched metric - base metric", "d_model": runs.w.W_E.shape[1]}
        | ({"steps": len(alphas), "rule": rule} if method == "eap_ig" else {}),
    )


def score_nodes(
    model: HookedPhi,
    pairs: PromptPairs,
    graph: Graph,
    metric: MetricKind | Metric = "logit_diff",
    *,
    dictionaries: Dictionary | Sequence[Dictionary] = (),
    method: Method = "eap",
    direction: Direction = "noising",
    steps: int = 5,
    rule: Rule = "midpoint",
) -> Float[Tensor, " node"]:
    """Every node of `graph` (`graph.senders` order) by its total effect, the estimated metric change of
    patching it alone from the source run: (source - base) . d metric / d output, the gradient through
    every path, summed over positions and width (a latent's over positions), the mean over prompts; at
    the base run (EAP) or averaged over EAP-IG's points, as `score_graph`. It builds no edge table, so a
    graph of every latent of large dictionaries is scored as cheaply as its nodes."""
    direction, alphas = gradient_points(method, steps, rule, direction)
    with ExitStack() as stack:
        runs = _prepare(stack, model, pairs, graph, metric, dictionaries, direction, "score_nodes")
        total = 0.0
        for alpha in alphas:
            total = total + _node_row(graph, runs.deltas, _total_gradients(runs, alpha))
    return (total / len(alphas)).mean(0)


def _total_gradients(runs: _Runs, alpha: float) -> dict[str, Tensor]:
    """The metric's gradient at every point (through every path) in the run `alpha` of the way from the
    base run to the source run; "input" for the embedding."""
    with torch.enable_grad():
        embed = runs.embed_at(alpha).detach().requires_grad_(True)
        kept: dict[str, Tensor] = {}
        run = forward(runs.w, embed, {p: Keep(kept, grad=True) for p in runs.points})
        metric = runs.core.metric(run.logits(runs.w), runs.core.everyone).sum()  # prompts are independent
        grads = torch.autograd.grad(metric, [embed] + [kept[p] for p in runs.points], allow_unused=True)
    return {
        name: (g if g is not None else torch.zeros_like(runs.deltas[name])).detach()
        for name, g in zip(["input", *runs.points], grads, strict=True)
    }


def _node_row(
    graph: Graph, deltas: dict[str, Tensor], grads: dict[str, Tensor]
) -> Float[Tensor, "batch node"]:
    """Every node's (source - base) . gradient at its write point, per prompt; a site's latents at once."""
    columns = []
    for (name, kind), group in groupby(graph.nodes, key=lambda node: (_write_point(node)[0], node.kind)):
        nodes = list(group)
        product = deltas[name] * grads[name].to(deltas[name].dtype)
        if kind == "latent":
            latents = torch.tensor([node.latent for node in nodes], device=product.device)
            columns.append(product.sum(-2)[:, latents])  # batch pos d_sae -> batch latent
        else:
            columns += [_summed(product, _write_point(node)[1])[:, None] for node in nodes]
    return torch.cat(columns, dim=1).float().cpu()


@torch.no_grad()
def _values(w: PhiWeights, embed: Float[Tensor, "batch pos d_model"], points: list[str]) -> dict[str, Tensor]:
    kept: dict[str, Tensor] = {}
    forward(w, embed, {p: Keep(kept) for p in points})
    return kept


def _at(
    w, graph: Graph, core, embed: Float[Tensor, "batch pos d_model"], points: list[str], deltas: dict
) -> Float[Tensor, "batch sender receiver"]:
    """[batch sender receiver]: every edge at one run (its values and the metric's total gradients)."""
    reads = [_read_point(r) for r in graph.receivers]
    read_names = list(dict.fromkeys(p for p, _ in filter(None, reads)))
    index = core.everyone
    with torch.enable_grad():
        kept: dict[str, Tensor] = {}
        start = embed.detach().requires_grad_(True)
        run = forward(w, start, {p: Keep(kept, grad=True) for p in dict.fromkeys(points + read_names)})
        metric = core.metric(run.logits(w), index).sum()  # prompts are independent
        grads = torch.autograd.grad(metric, [kept[p] for p in read_names], allow_unused=True)
        gradient = {
            p: (g if g is not None else torch.zeros_like(kept[p])).detach()
            for p, g in zip(read_names, grads, strict=True)
        }
        values = {p: kept[p].detach() for p in points}
        leaves = {p: values[p].clone().requires_grad_(True) for p in points}
        computed: dict[str, Tensor] = {}
        leaf_embed = embed.detach().clone().requires_grad_(True)
        edits = {p: [Keep(computed, grad=True), Replace(leaves[p])] for p in points}
        edits |= {p: [Keep(computed, grad=True)] for p in read_names if p not in leaves}
        run = forward(w, leaf_embed, edits)
        leaf_metric = core.metric(run.logits(w), index).sum()
        senders = [_write_point(node) for node in graph.nodes]
        inputs = {"input": leaf_embed} | leaves
        out = torch.zeros(embed.shape[0], graph.n_forward, graph.n_backward)
        for r, read in enumerate(reads):
            live = graph.mask[:, r].nonzero().flatten().tolist()
            if not live:
                continue
            if read is None:
                target = leaf_metric
            else:
                name, at = read
                target = (
                    (gradient[name] * computed[name])[at].sum()
                    if at
                    else (gradient[name] * computed[name]).sum()
                )
            names = list(dict.fromkeys(senders[s][0] for s in live))
            got = torch.autograd.grad(
                target, [inputs[n] for n in names], retain_graph=True, allow_unused=True
            )
            by_name = dict(zip(names, got, strict=True))
            for s in live:
                name, at = senders[s]
                g = by_name[name]
                if g is not None:
                    out[:, s, r] = _summed(deltas[name] * g.to(deltas[name].dtype), at).float().cpu()
    return out
