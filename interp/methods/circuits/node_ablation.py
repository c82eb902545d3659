"""Circuits of a feature graph evaluated by ablating nodes, as Marks et al. (2024) evaluate feature circuits.

With the graph's dictionaries spliced in with their error terms, the clean prompts run with every
feature node the circuit joins (a latent at every position, or an error term) computing its value from
what reaches it in that run, and every other feature node (those the circuit leaves out, and the
latents that are no node of the graph) set to its ablated value: its value on the corrupted prompts
(`counterfactual`, per prompt and position), its mean over the corrupted prompts and positions
(`mean`; `mean_over="clean"`: over the clean ones, as `feature_faithfulness` averages by default), or
zero (`zero`), as `interp.methods.circuits.circuit` ablates senders: both take the values from
`interp.methods.interventions.ablation_values`, the code the vocabulary's `Ablate` runs. A node is in the
circuit when one of the circuit's edges joins it (`Circuit.nodes`), so an edge circuit is evaluated by
its nodes; pruned circuits (`select`'s default) hold only nodes on a path from the input to the logits.

`full()` is the model itself (every node computing: the clean metric, whatever the graph holds) and
`empty()` the circuit of no edge (every feature node ablated), so faithfulness (m(C) - m(empty)) /
(m(full) - m(empty)) compares a circuit with the whole model, as Marks et al. do. Graphs of heads and
MLPs with feature nodes are not evaluated here (a head is no node a dictionary point can ablate).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from typing import get_args

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.base.errors import InputError
from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptPairs
from interp.dictionaries.base import Dictionary
from interp.engine.edits import Replace
from interp.engine.forward import PhiWeights, forward
from interp.methods.circuits.graph import Circuit, FeatureSite, Graph
from interp.methods.contrastive import contrast
from interp.methods.hooked_run import engine_gather
from interp.methods.interventions import ablation_values
from interp.methods.vocabulary import CircuitAblationMethod, MeanOver, check_mean_over, check_method
from interp.model.loading import HookedPhi


def _points(site: FeatureSite) -> tuple[str, str]:
    return f"{site.writes}.dict.hook_acts", f"{site.writes}.dict.hook_error"


class NodeAblationEvaluator:
    """The clean metric of circuits of a feature graph (module docstring): the runs and the ablated
    values computed once, each circuit one forward."""

    def __init__(
        self,
        model: HookedPhi,
        pairs: PromptPairs,
        graph: Graph,
        metric: MetricKind | Metric,
        mode: str,  # checked against CircuitAblationMethod, naming what is allowed
        dictionaries: Dictionary | Sequence[Dictionary],
        mean_over: MeanOver | None = None,
    ):
        from interp.methods.circuits.direct_effects import check_dictionaries_for_circuits

        if graph.components or not graph.features:
            raise InputError(
                f"node ablation evaluates graphs of feature nodes alone (components=False), not {graph}; "
                "evaluate a head graph's circuits by its edges (CircuitEvaluator without feature sites)."
            )
        check_method(mode, get_args(CircuitAblationMethod), "mode")
        side = check_mean_over(mean_over, mode, "corrupted")
        if not pairs.same_length:
            raise InputError("node ablation ablates latents at every position: give prompts of one length.")
        self.model, self.pairs, self.graph = model, pairs, graph
        self.dictionaries = check_dictionaries_for_circuits(dictionaries)
        with ExitStack() as stack:
            w = self._spliced(stack)
            self.core = contrast(model, pairs, metric, direction="noising", keep="logits")
            tokens = pairs.clean_tokens if mode == "mean" and side == "clean" else pairs.corrupted_tokens
            # the feature nodes' values on the reference prompts, gathered as the engine's Ablate gathers
            reference = engine_gather(model, w)(tokens, self._all)
        self.ablated = {p: ablation_values(mode, [v])[0] for p, v in reference.items()}

    @property
    def _all(self) -> list[str]:
        return [p for site in self.graph.sites for p in _points(site)]

    def _spliced(self, stack: ExitStack) -> PhiWeights:
        from interp.methods.features.patching import spliced_for

        spliced = spliced_for(stack, self.model, self.dictionaries, True)
        have = {spliced.entry(d).writes: spliced.entry(d).reads for d in self.dictionaries}
        for site in self.graph.sites:
            if have.get(site.writes) != site.reads:
                raise InputError(
                    f"no dictionary given reads {site.reads!r} and writes {site.writes!r} (given: {have})"
                )
        return PhiWeights.from_model(self.model)

    def full(self) -> Float[Tensor, " batch"]:
        """The model's own metric on the clean prompts (every node computing)."""
        return self.core.clean_values

    def empty(self) -> Float[Tensor, " batch"]:
        """Every feature node ablated."""
        return self.of_nodes(set())

    def __call__(self, circuit: Circuit | Tensor) -> Float[Tensor, " batch"]:
        return self.of_nodes(Circuit.of(self.graph, circuit).nodes)

    @torch.no_grad()
    def of_nodes(self, nodes: set[str]) -> Float[Tensor, " batch"]:
        """The clean metric with every feature node but those named in `nodes` ablated."""
        edits = {}
        for site in self.graph.sites:
            acts, error = _points(site)
            kept = [i for i, name in zip(site.latents, site.node_names, strict=False) if name in nodes]
            value = self.ablated[acts]
            keep = torch.zeros(value.shape[-1], dtype=torch.bool, device=value.device)
            keep[kept] = True
            edits[acts] = _Where(keep, value)
            if not (site.error and site.node_names[-1] in nodes):
                edits[error] = Replace(self.ablated[error])
        with ExitStack() as stack:
            w = self._spliced(stack)
            run = forward(w, w.W_E[self.pairs.clean_tokens.to(w.W_E.device)], edits)
            return self.core.measure(run.logits(w), self.core.everyone).float().cpu()


class _Where:
    """Keep the latents where `keep`, take `value` elsewhere."""

    def __init__(self, keep: Bool[Tensor, " d_sae"], value: Float[Tensor, "batch pos d_sae"]):
        self.keep, self.value = keep, value

    def __call__(self, tensor: Float[Tensor, "batch pos d_sae"], site) -> Float[Tensor, "batch pos d_sae"]:
        return torch.where(self.keep, tensor, self.value.to(tensor.dtype))
