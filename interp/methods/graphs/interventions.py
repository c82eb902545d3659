"""Checking an attribution graph by intervention: its predicted logit changes against measured ones.

Set some features (one, or a supernode: several) to new values and ask three models what the graph's
logits (each logit minus the mean logit, as the graph's logit nodes) do:

- the graph itself (`predict`): a change of a source's activation by a factor changes each edge it sends
  by that factor (edges are linear in their source's activation), and an active feature's activation is
  its input, so changes flow through the graph layer by layer to the logits;
- the local replacement model (`local`): attention patterns, LayerNorm scales and error nodes frozen,
  every feature recomputed by its transcoder. It agrees with the graph exactly while no feature
  switches on or off (the check reports how many did: `flipped`);
- the real model with the transcoders substituted (`spliced`): attention and LayerNorm respond too, the
  prompt's error nodes are added (`errors="frozen"`) or not (`"none"`).

A graph that predicts the local model but not the spliced one says its frozen attention hides part of
what the intervention does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.methods.graphs.attribution import AttributionGraph
from interp.methods.graphs.replacement import Errors, Intervention, ReplacementModel


def node_index(graph: AttributionGraph, item: Intervention) -> int:
    """The graph's node of an intervened feature (an active feature of the prompt), or an error."""
    match = (graph.active == torch.tensor([item.layer, item.pos, item.feature])).all(1).nonzero()
    if not len(match):
        raise InputError(
            f"feature {item.feature} of layer {item.layer} is not active at position {item.pos}, so it is no "
            "node of this graph and the graph cannot predict what setting it does."
        )
    return int(match[0, 0])


def scaled(graph: AttributionGraph, nodes: Sequence[int], factor: float = 0.0) -> list[Intervention]:
    """Interventions setting each feature node in `nodes` (e.g. a supernode) to `factor` x its activation
    (0: ablate it; 2: double it)."""
    items = []
    for index in nodes:
        if graph.node_kind(index) != "feature":
            raise InputError(f"node {index} ({graph.label(index)}) is not a feature; only features are set.")
        layer, pos, feature = graph.active[index].tolist()
        items.append(Intervention(layer, pos, feature, factor * float(graph.activations[index])))
    return items


@torch.no_grad()
def predict(graph: AttributionGraph, interventions: Sequence[Intervention]) -> Float[Tensor, " logit"]:
    """The change of each logit node's value (logit - mean logit) the graph predicts."""
    n_feat = graph.n_features
    set_to = {node_index(graph, item): item.value for item in interventions}
    delta = torch.zeros(n_feat, dtype=torch.float64)
    relative = torch.zeros(n_feat, dtype=torch.float64)  # change of each source / its activation
    features = graph.adjacency[:n_feat, :n_feat].double()
    activations = graph.activations.double()
    for layer in range(graph.n_layers):
        here = (graph.active[:, 0] == layer).nonzero()[:, 0]
        delta[here] = features[here] @ relative
        for index in here.tolist():
            if index in set_to:
                delta[index] = set_to[index] - activations[index]
        relative[here] = delta[here] / activations[here]
    logits = graph.adjacency[graph.n_nodes - graph.n_logits :, :n_feat].double()
    return (logits @ relative).float()


@dataclass
class InterventionCheck:
    """Predicted and measured changes of each logit node's value, and features that switched."""

    logit_strings: list[str]
    predicted: Float[Tensor, " logit"]
    local: Float[Tensor, " logit"]
    spliced: Float[Tensor, " logit"]
    flipped_local: int  # (layer, pos, feature)s whose on / off state differs from the prompt's
    flipped_spliced: int

    def rows(self) -> list[list]:
        """A table: logit, predicted, local replacement model, spliced model."""
        return [
            [name, f"{p:+.4f}", f"{loc:+.4f}", f"{s:+.4f}"]
            for name, p, loc, s in zip(
                self.logit_strings,
                self.predicted.tolist(),
                self.local.tolist(),
                self.spliced.tolist(),
                strict=True,
            )
        ]


def _demeaned(logits: Float[Tensor, "pos d_vocab"], tokens: Int[Tensor, " logit"]) -> Float[Tensor, " logit"]:
    last = logits[-1].float()
    return (last[tokens.to(last.device)] - last.mean()).cpu()


def check_intervention(
    graph: AttributionGraph,
    rm: ReplacementModel,
    interventions: Sequence[Intervention],
    *,
    errors: Errors = "frozen",
) -> InterventionCheck:
    """The graph's prediction for `interventions` beside the local replacement model's and the spliced
    model's measured changes (`rm` is the replacement model the graph was built from)."""
    ours = set(map(tuple, rm.active.tolist()))
    if not torch.equal(rm.tokens.cpu(), graph.tokens) or not all(
        tuple(f) in ours for f in graph.active.tolist()
    ):
        raise InputError(
            "the replacement model is not the one this graph was built from (other tokens or features)."
        )
    if not interventions:
        raise InputError("give at least one Intervention (layer, pos, feature, value).")
    tokens = graph.logit_tokens
    measured = {}
    flipped = {}
    for mode in ("local", "spliced"):
        mode_errors = "frozen" if mode == "local" else errors
        base = rm.intervene([], mode, errors=mode_errors)
        run = rm.intervene(interventions, mode, errors=mode_errors)
        measured[mode] = _demeaned(run.logits, tokens) - _demeaned(base.logits, tokens)
        flipped[mode] = run.flipped
    return InterventionCheck(
        list(graph.logit_strings),
        predict(graph, interventions),
        measured["local"],
        measured["spliced"],
        flipped["local"],
        flipped["spliced"],
    )
