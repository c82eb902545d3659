"""Features on prompt pairs (`feature_attribution`): which dictionary latents carry the behaviour.

`interp.methods.features.attribution.feature_attribution` with the dictionaries of `dictionaries =
["path", ...]` (relative to the config file) spliced in: attribution patching on every latent and,
with `error = true`, every error term (Marks et al. 2024), per position. The dictionaries are checked
against the model, together as one splice (one per hook point written), before any unit runs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from interp.base.errors import InputError, InterpError
from interp.runner.kinds.dictionaries import DictionaryFiles, load_files
from interp.runner.options import Direction
from interp.runner.registry import AnalysisSpec, Computed, Finished, UnitContext, fixed, register


class FeatureAttributionOptions(DictionaryFiles):
    """`feature_attribution`: attribution patching on the latents (and error terms) of spliced dictionaries."""

    kind: Literal["feature_attribution"]
    direction: Direction = Field("denoising", description="denoising (patch clean into corrupted) or noising")
    error: bool = Field(
        True,
        description="splice with error terms (the model's outputs unchanged; error nodes attributed too)",
    )


def _check(options: FeatureAttributionOptions, model) -> None:
    from interp.dictionaries.splice import check_dictionaries

    try:
        check_dictionaries(model, load_files(options.dictionaries), options.error)
    except InterpError as error:
        raise InputError(f"dictionaries {options.dictionaries}: {error}") from None


def _compute(options: FeatureAttributionOptions, model, pairs, ctx: UnitContext) -> Computed:
    from interp.methods.features.attribution import feature_attribution

    result = feature_attribution(
        model,
        load_files(options.dictionaries),
        pairs,
        ctx.metric,
        direction=options.direction,
        error=options.error,
        reduce="none",
    )
    return Computed(("feature", "pos"), result.values, {"feature": result.labels["feature"]})


register(
    AnalysisSpec(
        kind="feature_attribution",
        summary="attribution patching on dictionary latents and error terms (sparse feature circuits)",
        explanation=(
            "Feature attribution (Marks et al. 2024): with the dictionaries spliced in, each latent's and each error "
            "term's estimated effect on the metric of patching it from the source run at one position, "
            "(source - base activation) x d metric / d activation on the base run. Exact where the metric is "
            "linear in the latents; check the top features with exact latent patching."
        ),
        per_prompt=True,
        options=FeatureAttributionOptions,
        dims=fixed("feature", "pos"),
        compute=_compute,
        finish=lambda options, mean, clean, corrupted: Finished(
            mean, "estimated metric change of patching the feature at the position, patched - unpatched", 0.0
        ),
        figures=("ranked_bars",),
        check=_check,
    )
)


class FeatureCircuitOptions(DictionaryFiles):
    """`feature_circuit`: a circuit of dictionary features and error nodes, its edges and its faithfulness."""

    kind: Literal["feature_circuit"]
    method: Literal["eap", "eap_ig"] = Field(
        "eap_ig",
        description="eap (gradients at the base run) or eap_ig (averaged along the embeddings' line)",
    )
    steps: int = Field(5, ge=1, le=100, description="eap_ig's integration points")
    direction: Direction = Field("denoising", description="denoising (patch clean into corrupted) or noising")
    top_k: int | None = Field(
        20, ge=0, description="keep this many nodes, by |node score| (with node_threshold, both must hold)"
    )
    node_threshold: float | None = Field(
        None, ge=0, description="keep the nodes whose |node score| is at least this (default: no threshold)"
    )
    sizes: list[int] = Field(
        [0, 1, 2, 5, 10, 20, 50],
        min_length=1,
        description="circuit sizes (top-n nodes by |node score|) of the faithfulness and completeness curves",
    )
    ablation: Literal["corrupted", "mean"] = Field(
        "corrupted",
        description="what a node outside the circuit takes: the corrupted run's value or its mean over the clean prompts",
    )

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, sizes: list[int]) -> list[int]:
        if any(n < 0 for n in sizes):
            raise ValueError(f"sizes must be integers 0 or more, got {sizes}")
        return sizes

    def unread(self) -> dict[str, str]:
        return {"steps": "method = 'eap'"} if self.method == "eap" else {}


def _check_circuit(options: FeatureCircuitOptions, model) -> None:
    from interp.dictionaries.splice import check_dictionaries
    from interp.methods.features.circuits import check_dictionaries_for_circuits, feature_sites

    try:
        dictionaries = check_dictionaries_for_circuits(load_files(options.dictionaries))
        feature_sites(check_dictionaries(model, dictionaries, True))  # points the feature graph holds
    except InterpError as error:
        raise InputError(f"dictionaries {options.dictionaries}: {error}") from None


def _compute_circuit(options: FeatureCircuitOptions, model, pairs, ctx: UnitContext) -> Computed:
    from interp.methods.features.circuit_evaluation import feature_faithfulness
    from interp.methods.features.circuits import feature_circuit

    dictionaries = load_files(options.dictionaries)
    circuit = feature_circuit(
        model,
        dictionaries,
        pairs,
        ctx.metric,
        method=options.method,
        direction=options.direction,
        steps=options.steps,
        top_k=options.top_k,
        node_threshold=options.node_threshold,
    )
    curve = feature_faithfulness(
        model, dictionaries, pairs, circuit, options.sizes, ctx.metric, ablation=options.ablation
    )
    labels = [circuit.labels[i] for i in circuit.kept]
    extra = {"circuit": circuit.to_json(), "curve": curve.to_json(), "top_edges": circuit.top_edges(20)}
    return Computed(("feature",), circuit.node_scores[circuit.kept], {"feature": labels}, extra)


register(
    AnalysisSpec(
        kind="feature_circuit",
        summary="a circuit of dictionary features and error nodes on prompt pairs (sparse feature circuits)",
        explanation=(
            "Feature circuit (Marks et al. 2024): with the dictionaries spliced in with their error terms, every "
            "latent (summed over positions) and every error term is a node; a node's score is its estimated effect "
            "of patching it from the source run, an edge's the direct effect of one node on a later one (or on the "
            "metric) not through any other node, by EAP or EAP-IG. The kept nodes are the top ones by |score|; "
            "faithfulness ablates every node outside the top n (to its corrupted value or mean), completeness the "
            "top n themselves: 1 and 0 for a circuit that carries the whole behaviour."
        ),
        per_prompt=False,
        options=FeatureCircuitOptions,
        dims=fixed("feature"),
        compute=_compute_circuit,
        finish=lambda options, values, clean, corrupted: Finished(
            values,
            "estimated metric change of patching the feature at every position, patched - unpatched",
            0.0,
        ),
        figures=("ranked_bars",),
        check=_check_circuit,
    )
)
