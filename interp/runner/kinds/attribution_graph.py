"""Attribution graphs (`attribution_graph`): one prompt's graph through per-layer transcoders, pruned, with
its replacement / completeness scores and an intervention check of its top features
(`interp.methods.graphs`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from interp.base.errors import InputError
from interp.runner.kinds.dictionaries import load_files
from interp.runner.options import AnalysisOptions
from interp.runner.registry import AnalysisSpec, Computed, Finished, UnitContext, fixed, register

Path = Annotated[str, StringConstraints(min_length=1)]
Prompt = Annotated[str, StringConstraints(min_length=1)]
UNIT = "influence on the graph's logits (probability-weighted share of their inputs, over every path)"


class AttributionGraphOptions(AnalysisOptions):
    """`attribution_graph`: the graph of one prompt's next-token logits through `transcoders`."""

    kind: Literal["attribution_graph"]
    transcoders: list[Path] = Field(
        min_length=1,
        description="one transcoder directory per layer, in layer order (SAELens or sparsify layout, as "
        "interp.load_dictionary reads; relative to the config file), each reading blocks.L.ln1.hook_normalized "
        "(or ln1.hook_out, hook_resid_pre) and writing blocks.L.hook_mlp_out",
    )
    prompt: Prompt | None = Field(
        None, description="the prompt whose last position is explained (default: the clean prompt of `pair`)"
    )
    pair: int = Field(0, ge=0, description="which pair's clean prompt is explained (with no `prompt`)")
    max_logits: int = Field(10, ge=1, le=100, description="at most this many output logits are graph nodes")
    logit_probability: float = Field(
        0.95,
        gt=0,
        le=1,
        description="the fewest top logits whose probabilities sum to this (up to max_logits)",
    )
    node_threshold: float = Field(
        0.8,
        ge=0,
        le=1,
        description="pruning keeps the most influential nodes holding this share of influence",
    )
    edge_threshold: float = Field(
        0.98, ge=0, le=1, description="pruning keeps the strongest edges holding this share of edge influence"
    )
    batch_size: int = Field(64, ge=1, le=4096, description="targets per backward pass")
    max_feature_nodes: int | None = Field(
        None,
        ge=1,
        description="only this many features, the most influential, become nodes (default: every one)",
    )
    check_top: int = Field(
        5,
        ge=0,
        le=50,
        description="the most influential features each ablated to check the graph's prediction",
    )

    def unread(self) -> dict[str, str]:
        if self.prompt is not None:
            return {"pair": "a prompt is given"}
        return {}


def _load(options: AttributionGraphOptions) -> list:
    return load_files(options.transcoders, "transcoders")


def _check(options: AttributionGraphOptions, model) -> None:
    from interp.methods.graphs.replacement import check_transcoders

    check_transcoders(_load(options), model.cfg.n_layers, model.cfg.d_model)


def _prompt(options: AttributionGraphOptions, pairs):
    if options.prompt is not None:
        return options.prompt
    if options.pair >= len(pairs):
        raise InputError(f"pair = {options.pair}, but the task has {len(pairs)} pairs (0..{len(pairs) - 1}).")
    return pairs.clean_tokens[options.pair, : int(pairs.lengths[options.pair])]


def _compute(options: AttributionGraphOptions, model, pairs, ctx: UnitContext) -> Computed:
    import torch

    from interp.methods.graphs.attribution import attribution_graph
    from interp.methods.graphs.graph_json import graph_to_json
    from interp.methods.graphs.interventions import check_intervention, scaled
    from interp.methods.graphs.promoted import promoted_tokens
    from interp.methods.graphs.pruning import graph_scores, prune_graph
    from interp.methods.graphs.replacement import replacement_model

    transcoders = [tc.to(model.cfg.device) for tc in _load(options)]
    graph = attribution_graph(
        model,
        _prompt(options, pairs),
        transcoders,
        max_logits=options.max_logits,
        logit_probability=options.logit_probability,
        batch_size=options.batch_size,
        max_feature_nodes=options.max_feature_nodes,
        transcoder_names=options.transcoders,
    )
    pruned = prune_graph(graph, options.node_threshold, options.edge_threshold)
    kept = pruned.node_mask.nonzero()[:, 0]
    kept = kept[pruned.influence[kept].argsort(descending=True, stable=True)]
    scores = graph_scores(graph)
    checks = []
    by_influence = pruned.influence[: graph.n_features].argsort(descending=True, stable=True)
    features = by_influence[: options.check_top].tolist()  # the most influential, kept by pruning or not
    rm = replacement_model(model, graph.tokens, transcoders) if features else None
    for index in features:
        check = check_intervention(graph, rm, scaled(graph, [index], 0.0))
        checks.append(
            {
                "node": graph.label(index),
                "logit": graph.logit_strings[0],
                "predicted": float(check.predicted[0]),
                "local": float(check.local[0]),
                "spliced": float(check.spliced[0]),
                "flipped_local": check.flipped_local,
            }
        )
    graph_file = graph_to_json(graph, pruned, slug=options.name or "attribution_graph")
    shown = {n["node_id"] for n in graph_file["nodes"]}
    extra = {
        "graph": graph_file,
        "cards": promoted_tokens(model, transcoders, graph, only=shown),
        "scores": {"replacement": scores.replacement, "completeness": scores.completeness},
        "counts": {
            "active": graph.n_active,
            "features": graph.n_features,
            "nodes": graph.n_nodes,
            "kept_nodes": int(len(kept)),
        },  # fmt: skip
        "checks": checks,
    }
    labels = {"node": [graph.label(int(i)) for i in kept]}
    return Computed(("node",), pruned.influence[kept].to(torch.float32), labels, extra)


def _finish(options: AttributionGraphOptions, values, clean: float, corrupted: float) -> Finished:
    return Finished(
        values,
        f"each kept node's influence on the top logits (pruned at node threshold {options.node_threshold}, "
        f"edge threshold {options.edge_threshold})",
        0.0,
        {"unit": UNIT},
    )


register(
    AnalysisSpec(
        kind="attribution_graph",
        summary="attribution graph of one prompt through per-layer transcoders (circuit-tracer's method)",
        explanation=(
            "Attribution graph (Ameisen et al. 2025): the MLPs replaced by transcoders, attention patterns and "
            "LayerNorm scales frozen, so every node's input (a feature's pre-activation, a logit minus the mean "
            "logit) is the sum of direct linear effects from active features, error nodes (what the transcoders "
            "miss) and token embeddings. Pruned to the nodes and edges with most influence on the top logits. "
            "The replacement score is the share of the tokens' and errors' influence that goes through features "
            "(1 = no error); completeness weighs each node's non-error input share by its influence."
        ),
        per_prompt=False,
        options=AttributionGraphOptions,
        dims=fixed("node"),
        compute=_compute,
        finish=_finish,
        figures=("attribution_graph",),
        check=_check,
    )
)
