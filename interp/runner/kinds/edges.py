"""Edge-level circuit discovery: scores of every edge (`edge_patch`, `eap`, `eap_ig`) and the
faithfulness of the circuits they choose (`circuit_faithfulness`), `interp.methods.circuits`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from interp.methods.vocabulary import CircuitAblationMethod as Mode
from interp.runner.options import AnalysisOptions, Direction
from interp.runner.registry import AnalysisSpec, Computed, Finished, UnitContext, fixed, register

EdgeMethod = Literal["eap", "eap_ig", "edge_patch"]
Rule = Literal["midpoint", "left", "right"]  # interp.methods.circuits.edge_attribution.Rule

EDGE_EXPLANATION = (
    "Edge scores: the metric change when only one edge (sender -> receiver input) carries the source run's "
    "value, the base run everywhere else (noising: base = clean prompts, so important edges are negative). "
    "edge_patch measures it exactly; eap and eap_ig estimate it from gradients at every receiver input. The "
    "graph shows the strongest edges, layers as rows; its slider sets how many."
)
DIRECTION = (
    "noising (the default): base = the clean prompts, each edge carries its corrupted-run value; "
    "denoising: the reverse"
)
STEPS = "integration steps of EAP-IG (1 .. 100)"
RULE = (
    "where EAP-IG's steps sit between the corrupted (t=0) and clean (t=1) runs: 'midpoint' (the default, "
    "(k + 0.5)/steps: the more accurate), 'left' (k/steps, k = 0..steps-1: the EAP-IG library's inputs "
    "variant), 'right' ((k + 1)/steps: the library's ig-activations points)"
)


class EdgeOptions(AnalysisOptions):
    """`edge_patch`, `eap`: every edge's score, measured exactly or from one gradient."""

    kind: Literal["edge_patch", "eap"]
    direction: Direction = Field("noising", description=DIRECTION)


class EapIgOptions(AnalysisOptions):
    """`eap_ig`: every edge's score from gradients integrated between the base and source runs."""

    kind: Literal["eap_ig"]
    direction: Direction = Field("noising", description=DIRECTION)
    steps: int = Field(5, ge=1, le=100, description=STEPS)
    variant: Literal["inputs", "activations"] = Field(
        "inputs", description="interpolate the input embeddings, or each node group's outputs (MIB)"
    )
    rule: Rule = Field("midpoint", description=RULE)


class FaithfulnessOptions(AnalysisOptions):
    """`circuit_faithfulness`: circuits of the top edges by one method's scores, run with the rest ablated."""

    kind: Literal["circuit_faithfulness"]
    direction: Direction = Field("noising", description=DIRECTION)
    edge_method: EdgeMethod = Field("eap_ig", description="how edges are scored before circuits are chosen")
    steps: int = Field(5, ge=1, le=100, description=STEPS + " (read with edge_method = 'eap_ig' only)")
    rule: Rule = Field("midpoint", description=RULE + " (read with edge_method = 'eap_ig' only)")
    mode: Mode = Field("counterfactual", description="what edges left out of a circuit carry")

    def unread(self) -> dict[str, str]:
        if self.edge_method != "eap_ig":
            why = f"edge_method = {self.edge_method!r} does not integrate (only 'eap_ig' does)"
            return {"steps": why, "rule": why}
        return {}


def _edge_patch(options: EdgeOptions, model, pairs, ctx: UnitContext) -> Computed:
    from interp.methods.circuits.edge_patching import edge_patch

    scores = edge_patch(
        model, pairs, ctx.metric, direction=options.direction, reduce="none", memory_budget=ctx.memory_budget
    )
    return Computed(("edge",), scores.values)


def _eap(options: EdgeOptions, model, pairs, ctx: UnitContext) -> Computed:
    from interp.methods.circuits.edge_attribution import eap

    return Computed(
        ("edge",), eap(model, pairs, ctx.metric, direction=options.direction, reduce="none").values
    )


def _eap_ig(options: EapIgOptions, model, pairs, ctx: UnitContext) -> Computed:
    from interp.methods.circuits.edge_attribution import eap_ig

    scores = eap_ig(
        model,
        pairs,
        ctx.metric,
        direction=options.direction,
        steps=options.steps,
        variant=options.variant,
        rule=options.rule,
        reduce="none",
    )
    return Computed(("edge",), scores.values)


def _edge_finish(measured: str):
    def finish(options, mean, clean: float, corrupted: float) -> Finished:
        return Finished(
            mean, f"{measured} metric change, patched - unpatched run, when only that edge is patched", 0.0
        )

    return finish


for _kind, _options, _compute, _summary in (
    ("edge_patch", EdgeOptions, _edge_patch, "exact edge patching of every edge (batched)"),
    ("eap", EdgeOptions, _eap, "edge attribution patching (one forward and backward pass)"),
    ("eap_ig", EapIgOptions, _eap_ig, "EAP with integrated gradients (`steps` passes)"),
):
    register(
        AnalysisSpec(
            kind=_kind,
            summary=_summary,
            explanation=EDGE_EXPLANATION,
            per_prompt=True,
            options=_options,
            dims=fixed("edge"),
            compute=_compute,
            finish=_edge_finish("measured" if _kind == "edge_patch" else "estimated"),
            figures=("circuit_graph",),
        )
    )


def _scores(options: FaithfulnessOptions, model, pairs, ctx: UnitContext):
    """The edge scores circuits are chosen by: the edge method with the options it reads."""
    from interp.methods.circuits import edge_attribution, edge_patching

    if options.edge_method == "eap_ig":
        return edge_attribution.eap_ig(
            model, pairs, ctx.metric, direction=options.direction, steps=options.steps, rule=options.rule
        )
    if options.edge_method == "eap":
        return edge_attribution.eap(model, pairs, ctx.metric, direction=options.direction)
    return edge_patching.edge_patch(
        model, pairs, ctx.metric, direction=options.direction, memory_budget=ctx.memory_budget
    )


def _faithfulness(options: FaithfulnessOptions, model, pairs, ctx: UnitContext) -> Computed:
    import torch

    from interp.methods.circuits.circuit import MIB_FRACTIONS, faithfulness_curve

    scores = _scores(options, model, pairs, ctx)
    curves = [
        faithfulness_curve(model, pairs, scores, ctx.metric, absolute=absolute, mode=options.mode)
        for absolute in (True, False)
    ]
    values = torch.tensor([curve.faithfulness for curve in curves])
    labels = {"ranking": ["|score| (CMD)", "signed (CPR)"], "fraction": [f"{f:.1%}" for f in MIB_FRACTIONS]}
    return Computed(("ranking", "fraction"), values, labels)


def _faithfulness_finish(options: FaithfulnessOptions, mean, clean: float, corrupted: float) -> Finished:
    from interp.methods.circuits.circuit import MIB_FRACTIONS, trapezoid

    by_magnitude, signed = mean.tolist()
    fractions = list(MIB_FRACTIONS)
    extra = {
        "cmd": trapezoid(fractions, [abs(1 - f) for f in by_magnitude]),
        "cpr": trapezoid(fractions, signed),
        "fractions": fractions,
    }
    description = (
        f"faithfulness (m(circuit) - m(empty)) / (m(full) - m(empty)) of the top fraction of edges by "
        f"{options.edge_method} score, other edges {options.mode}; CPR {extra['cpr']:.3f} (area under the "
        f"signed curve, higher is better), CMD {extra['cmd']:.3f} (area between the |score| curve and 1, lower is better)"
    )
    return Finished(mean, description, None, extra)


register(
    AnalysisSpec(
        kind="circuit_faithfulness",
        summary="faithfulness curves of circuits of 0.1% .. 100% of edges, with MIB's CPR and CMD",
        explanation=(
            "Circuit faithfulness: circuits of the top 0.1% to 100% of edges run on the clean prompts with every "
            "other edge ablated; 1 = the circuit does all the model does, 0 = no more than the empty circuit. "
            "CPR (MIB) is the area under the curve with edges ranked by signed score; CMD the area between the "
            "|score|-ranked curve and 1."
        ),
        per_prompt=False,
        options=FaithfulnessOptions,
        dims=fixed("ranking", "fraction"),
        compute=_faithfulness,
        finish=_faithfulness_finish,
        figures=("faithfulness_curve",),
    )
)
