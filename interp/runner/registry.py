"""The analysis registry: one entry per analysis kind an experiment config may ask for.

An entry says everything the runner, the config validator, `interp tasks` and the report need:

- `compute(options, model, pairs, ctx)`: per-prompt values (last axis = the batch's prompts) for
  per-prompt kinds, so batches are computed, saved and resumed independently and averaged at the end;
- `finish(options, mean_values, clean, corrupted)`: what results.json reports, what one value means,
  and the value that means "no effect" (the report ranks by distance from it, as `EffectResult.top`
  does in notebooks);
- `dims(options)`: the axes of the values (checked against what `compute` returns);
- `options`: the `[[analysis]]` fields the kind reads (setting another one is a config error);
- `explanation` for the report, `summary` for `interp tasks`, `figures` by name (drawn by the report);
- `defaults`: options whose default differs for this kind (edge methods default to noising).

Adding a kind = one `register(AnalysisSpec(...))` here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import einops
import torch
from torch import Tensor

from interp.data.metrics import MetricKind, normalise
from interp.data.prompts import PromptPairs
from interp.methods.ablation import ablation_sweep
from interp.methods.activation_patching import SITE_DIMS, sweep
from interp.methods.attribution_patching import attribution_patch
from interp.methods.circuits.circuit import MIB_FRACTIONS, faithfulness_curve, trapezoid
from interp.methods.circuits.edge_attribution import eap, eap_ig
from interp.methods.circuits.edge_patching import edge_patch
from interp.methods.direct_logit_attribution import direct_logit_attribution
from interp.methods.generation import generate
from interp.methods.head_scores import head_scores
from interp.methods.interventions import AblateHeads, PatchFrom
from interp.methods.logit_lens import logit_lens
from interp.methods.path_patching import path_patch
from interp.methods.steering import steer_sweep
from interp.model.cache import cache_activations
from interp.model.loading import HookedPhi
from interp.runner.options import AnalysisOptions


@dataclass(frozen=True)
class UnitContext:
    """What a unit needs from the config beyond its own options."""

    metric: MetricKind
    seed: int
    memory_budget: int  # bytes of activations per patching chunk


@dataclass
class Computed:
    """A unit's values and their dims (and labels for named dims)."""

    dims: tuple[str, ...]
    values: Tensor  # [...dims, batch] for per-prompt kinds, [...dims] otherwise
    labels: dict[str, list[str]] | None = None
    extra: dict | None = None  # JSON-able fields for results.json (e.g. generated samples); not per prompt


@dataclass(frozen=True)
class Finished:
    """What results.json reports for an analysis: values, what one means, and the no-effect value."""

    values: Tensor
    description: str
    no_effect: float | None  # the value that means "no effect"; None: values are not ranked
    extra: dict | None = None  # further fields of the analysis's entry in results.json


@dataclass(frozen=True)
class AnalysisSpec:
    """Everything about one analysis kind (see the module docstring)."""

    kind: str
    summary: str
    explanation: str
    per_prompt: bool
    options: frozenset[str]
    dims: Callable[[AnalysisOptions], tuple[str, ...]]
    compute: Callable[[AnalysisOptions, HookedPhi, PromptPairs, UnitContext], Computed]
    finish: Callable[[AnalysisOptions, Tensor, float, float], Finished]
    figures: tuple[str, ...]
    defaults: dict = field(default_factory=dict)  # options whose default differs for this kind


REGISTRY: dict[str, AnalysisSpec] = {}
COMMON_OPTIONS = frozenset({"name", "top_k"})


def register(spec: AnalysisSpec) -> AnalysisSpec:
    """Add an analysis kind to the registry (each kind once)."""
    if spec.kind in REGISTRY:
        raise ValueError(f"analysis kind {spec.kind!r} is registered twice")
    REGISTRY[spec.kind] = spec
    return spec


def spec_for(kind: str) -> AnalysisSpec:
    """The registry entry of `kind`."""
    return REGISTRY[kind]


def _fixed(*dims: str) -> Callable[[AnalysisOptions], tuple[str, ...]]:
    return lambda options: dims


# --- activation patching: one kind per site ---

PATCH_EXPLANATION = (
    "Activation patching: each cell replaces one activation of the corrupted run with its value from the "
    "clean run (denoising) or the reverse (noising) and reports the patched metric, normalised so that 1 is "
    "the clean value and 0 the corrupted one. Denoising: cells near 1 carry enough to restore the behaviour; "
    "0 is no effect. Noising: cells near 0 are needed for the behaviour; 1 is no effect."
)


def _normalised_patch(what: str) -> Callable[[AnalysisOptions, Tensor, float, float], Finished]:
    def finish(options: AnalysisOptions, mean: Tensor, clean: float, corrupted: float) -> Finished:
        into = "the corrupted run" if options.direction == "denoising" else "the clean run"
        no_effect = 0.0 if options.direction == "denoising" else 1.0
        description = (
            f"normalised patched metric, (patched - corrupted) / (clean - corrupted), {what} patched into "
            f"{into}: 1 = the clean metric, 0 = the corrupted one; {no_effect:g} = no effect"
        )
        return Finished(normalise(mean, clean, corrupted), description, no_effect)

    return finish


def _sweep_compute(site: str) -> Callable[[AnalysisOptions, HookedPhi, PromptPairs, UnitContext], Computed]:
    def compute(options: AnalysisOptions, model: HookedPhi, pairs: PromptPairs, ctx: UnitContext) -> Computed:
        result = sweep(
            model,
            pairs,
            site,
            ctx.metric,
            direction=options.direction,
            reduce="none",
            memory_budget=ctx.memory_budget,
        )
        return Computed(result.dims, result.values)

    return compute


for _site, _dims in SITE_DIMS.items():
    register(
        AnalysisSpec(
            kind=f"patch_{_site}",
            summary=f"exact activation patching of {_site} over ({', '.join(_dims)})",
            explanation=PATCH_EXPLANATION,
            per_prompt=True,
            options=COMMON_OPTIONS | {"direction"},
            dims=_fixed(*_dims),
            compute=_sweep_compute(_site),
            finish=_normalised_patch(f"each {_site}"),
            figures=("heatmap",),
        )
    )


# --- path patching ---


def _path_compute(
    options: AnalysisOptions, model: HookedPhi, pairs: PromptPairs, ctx: UnitContext
) -> Computed:
    result = path_patch(
        model,
        pairs,
        options.receivers,
        receiver_input=options.receiver_input,
        senders=options.senders or None,
        metric=ctx.metric,
        direction=options.direction,
        reduce="none",
    )
    return Computed(result.dims, result.values)


def _path_finish(options: AnalysisOptions, mean: Tensor, clean: float, corrupted: float) -> Finished:
    receivers = options.receivers if options.receivers == "logits" else [list(r) for r in options.receivers]
    what = f"the sender's path to {receivers} ({options.receiver_input})"
    return _normalised_patch(what)(options, mean, clean, corrupted)


register(
    AnalysisSpec(
        kind="path_patch",
        summary="exact path patching (Wang et al.) from every head, or a sender set, to receivers or logits",
        explanation=(
            "Path patching: the effect of each sender head on the output only through the chosen receivers "
            "(all other heads frozen, MLPs recomputed). Denoising (a config's default): values near 1 mark "
            "senders whose path restores the behaviour; 0 is no effect. Noising (Wang et al.; the Python "
            "API's default): values near 0 mark paths the behaviour needs; 1 is no effect."
        ),
        per_prompt=True,
        options=COMMON_OPTIONS | {"direction", "senders", "receivers", "receiver_input"},
        dims=lambda options: () if options.senders else ("layer", "head"),
        compute=_path_compute,
        finish=_path_finish,
        figures=("heatmap",),
    )
)


# --- attribution patching ---


def _attribution_compute(
    site: str,
) -> Callable[[AnalysisOptions, HookedPhi, PromptPairs, UnitContext], Computed]:
    def compute(options: AnalysisOptions, model: HookedPhi, pairs: PromptPairs, ctx: UnitContext) -> Computed:
        result = attribution_patch(model, pairs, ctx.metric, direction=options.direction, reduce="none")[site]
        return Computed(result.dims, result.values)

    return compute


def _attribution_finish(options: AnalysisOptions, mean: Tensor, clean: float, corrupted: float) -> Finished:
    description = (
        "attribution-patching estimate of the patching effect as a fraction of the gap, "
        "(estimated patched - base) / (clean - corrupted); 0 = no effect"
    )
    return Finished(mean / (clean - corrupted), description, 0.0)


for _kind, _site in (("attrib_head_out", "head_out"), ("attrib_resid_pre", "resid_pre")):
    register(
        AnalysisSpec(
            kind=_kind,
            summary=f"attribution patching (gradient estimate) of {_site}",
            explanation=(
                "Attribution patching: a gradient (first-order) estimate of the patching effect of every component "
                "from a single backward pass. Fast, but approximate: confirm its top components with exact patching."
            ),
            per_prompt=True,
            options=COMMON_OPTIONS | {"direction"},
            dims=_fixed(*SITE_DIMS[_site]),
            compute=_attribution_compute(_site),
            finish=_attribution_finish,
            figures=("heatmap",),
        )
    )


# --- direct logit attribution and the logit lens ---

DLA_EXPLANATION = (
    "Direct logit attribution: how much each component writes, directly, into logit(answer) - logit(wrong) at "
    "the final position. Components that act through later layers can matter a lot and still score low here."
)


def _dla_head(options: AnalysisOptions, model: HookedPhi, pairs: PromptPairs, ctx: UnitContext) -> Computed:
    heads = direct_logit_attribution(model, pairs).heads
    return Computed(("layer", "head"), einops.rearrange(heads, "batch layer head -> layer head batch"))


def _dla_layer(options: AnalysisOptions, model: HookedPhi, pairs: PromptPairs, ctx: UnitContext) -> Computed:
    dla = direct_logit_attribution(model, pairs)
    values = einops.rearrange([dla.attn, dla.mlp], "component batch layer -> layer component batch")
    return Computed(("layer", "component"), values, {"component": ["attn", "mlp"]})


def _as_is(description: str, no_effect: float | None = 0.0):
    def finish(options: AnalysisOptions, mean: Tensor, clean: float, corrupted: float) -> Finished:
        return Finished(mean, description, no_effect)

    return finish


register(
    AnalysisSpec(
        kind="dla_head",
        summary="direct logit attribution of every head",
        explanation=DLA_EXPLANATION,
        per_prompt=True,
        options=COMMON_OPTIONS,
        dims=_fixed("layer", "head"),
        compute=_dla_head,
        finish=_as_is("direct logit attribution: what the head writes into logit(answer) - logit(wrong)"),
        figures=("heatmap",),
    )
)
register(
    AnalysisSpec(
        kind="dla_layer",
        summary="direct logit attribution of each layer's attention and MLP",
        explanation=DLA_EXPLANATION,
        per_prompt=True,
        options=COMMON_OPTIONS,
        dims=_fixed("layer", "component"),
        compute=_dla_layer,
        finish=_as_is("direct logit attribution of each layer's attention and MLP output"),
        figures=("grouped_bars",),
    )
)


def _lens(options: AnalysisOptions, model: HookedPhi, pairs: PromptPairs, ctx: UnitContext) -> Computed:
    lens = logit_lens(model, pairs)
    return Computed(("layer",), lens.logit_diff, {"layer": lens.labels})


register(
    AnalysisSpec(
        kind="logit_lens",
        summary="logit difference decoded from the residual stream after each layer",
        explanation=(
            "Logit lens: the residual stream after each layer decoded through the final LayerNorm and unembedding; "
            "where the curve rises is where the answer becomes readable."
        ),
        per_prompt=True,
        options=COMMON_OPTIONS,
        dims=_fixed("layer"),
        compute=_lens,
        finish=_as_is("logit(answer) - logit(wrong) decoded from the residual stream after each layer", None),
        figures=("lens",),
    )
)


# --- ablations and head scores ---


def _ablate(options: AnalysisOptions, model: HookedPhi, pairs: PromptPairs, ctx: UnitContext) -> Computed:
    result = ablation_sweep(
        model,
        pairs,
        options.method,
        ctx.metric,
        reference=options.reference,
        seed=ctx.seed,
        reduce="none",
        memory_budget=ctx.memory_budget,
    )
    return Computed(result.dims, result.values)


def _ablate_finish(options: AnalysisOptions, mean: Tensor, clean: float, corrupted: float) -> Finished:
    return Finished(mean, f"metric change when the head is {options.method}-ablated (ablated - clean)", 0.0)


register(
    AnalysisSpec(
        kind="ablate_head",
        summary="ablate every head alone (zero, mean or resample) on the clean prompts",
        explanation=(
            "Ablation: the metric change when one head's output is removed (negative = the head was helping). "
            "Unlike direct attribution this counts every path through which the head acts."
        ),
        per_prompt=True,
        options=COMMON_OPTIONS | {"method", "reference"},
        dims=_fixed("layer", "head"),
        compute=_ablate,
        finish=_ablate_finish,
        figures=("heatmap", "ranked_bars"),
    )
)


def _scores(options: AnalysisOptions, model: HookedPhi, pairs: PromptPairs, ctx: UnitContext) -> Computed:
    return Computed(("layer", "head"), head_scores(model, seed=ctx.seed)[options.score])


def _scores_finish(options: AnalysisOptions, mean: Tensor, clean: float, corrupted: float) -> Finished:
    name = options.score.replace("_", "-")
    return Finished(mean, f"{name} attention score (0..1) on repeated random tokens", 0.0)


register(
    AnalysisSpec(
        kind="head_scores",
        summary="previous-token, induction, duplicate-token or first-token score of every head",
        explanation="Attention-pattern score of each head on repeated random tokens (0 to 1).",
        per_prompt=False,
        options=COMMON_OPTIONS | {"score"},
        dims=_fixed("layer", "head"),
        compute=_scores,
        finish=_scores_finish,
        figures=("scores_heatmap",),
    )
)


# --- edge-level circuit discovery ---

EDGE_EXPLANATION = (
    "Edge scores: the metric change when only one edge (sender -> receiver input) carries the source run's "
    "value, the base run everywhere else (noising: base = clean prompts, so important edges are negative). "
    "edge_patch measures it exactly; eap and eap_ig estimate it from gradients at every receiver input. The "
    "graph shows the strongest edges, layers as rows; its slider sets how many."
)
EDGE_METHODS = {"edge_patch": edge_patch, "eap": eap, "eap_ig": eap_ig}


def _edge_compute(kind: str) -> Callable[[AnalysisOptions, HookedPhi, PromptPairs, UnitContext], Computed]:
    def compute(options: AnalysisOptions, model: HookedPhi, pairs: PromptPairs, ctx: UnitContext) -> Computed:
        extra = {"steps": options.steps} if kind == "eap_ig" else {}
        scores = EDGE_METHODS[kind](
            model, pairs, ctx.metric, direction=options.direction, reduce="none", **extra
        )
        return Computed(("edge",), scores.values)

    return compute


def _edge_finish(kind: str) -> Callable[[AnalysisOptions, Tensor, float, float], Finished]:
    measured = "measured" if kind == "edge_patch" else "estimated"

    def finish(options: AnalysisOptions, mean: Tensor, clean: float, corrupted: float) -> Finished:
        return Finished(
            mean, f"{measured} metric change, patched - unpatched run, when only that edge is patched", 0.0
        )

    return finish


for _kind, _summary in (
    ("edge_patch", "exact edge patching of every edge (batched)"),
    ("eap", "edge attribution patching (one forward and backward pass)"),
    ("eap_ig", "EAP with integrated gradients over the input embeddings (`steps` passes)"),
):
    register(
        AnalysisSpec(
            kind=_kind,
            summary=_summary,
            explanation=EDGE_EXPLANATION,
            per_prompt=True,
            options=COMMON_OPTIONS | {"direction"} | ({"steps", "variant"} if _kind == "eap_ig" else set()),
            dims=_fixed("edge"),
            compute=_edge_compute(_kind),
            finish=_edge_finish(_kind),
            figures=("circuit_graph",),
            defaults={"direction": "noising"},
        )
    )


def _faithfulness(
    options: AnalysisOptions, model: HookedPhi, pairs: PromptPairs, ctx: UnitContext
) -> Computed:
    extra = {"steps": options.steps} if options.edge_method == "eap_ig" else {}
    scores = EDGE_METHODS[options.edge_method](model, pairs, ctx.metric, direction=options.direction, **extra)
    curves = [
        faithfulness_curve(model, pairs, scores, ctx.metric, absolute=absolute, mode=options.mode)
        for absolute in (True, False)
    ]
    values = torch.tensor([curve.faithfulness for curve in curves])
    labels = {"ranking": ["|score| (CMD)", "signed (CPR)"], "fraction": [f"{f:.1%}" for f in MIB_FRACTIONS]}
    return Computed(("ranking", "fraction"), values, labels)


def _faithfulness_finish(options: AnalysisOptions, mean: Tensor, clean: float, corrupted: float) -> Finished:
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
        options=COMMON_OPTIONS | {"direction", "steps", "edge_method", "mode"},
        dims=_fixed("ranking", "fraction"),
        compute=_faithfulness,
        finish=_faithfulness_finish,
        figures=("faithfulness_curve",),
        defaults={"direction": "noising"},
    )
)


# --- generation and steering: text as well as numbers ---


def _steer(options: AnalysisOptions, model: HookedPhi, pairs: PromptPairs, ctx: UnitContext) -> Computed:
    layers = options.layers if options.layers is not None else list(range(model.cfg.n_layers + 1))
    result = steer_sweep(
        model, pairs, layers, options.multipliers, ctx.metric, positions=options.positions,
        n_samples=options.n_samples, max_new_tokens=options.max_new_tokens,
        positive=options.positive, negative=options.negative,
    )  # fmt: skip
    labels = {
        "layer": [f"L{layer}" for layer in layers],
        "multiplier": [f"x{m:g}" for m in options.multipliers],
    }
    extra = {"samples": result.samples, "kl": result.kl.tolist(), "unsteered": result.unsteered}
    return Computed(("layer", "multiplier"), result.scores, labels, extra)


def _vector_source(options: AnalysisOptions) -> str:
    if options.positive is None:
        return "clean - corrupted"
    return f"positive - negative prompts' ({len(options.positive)} / {len(options.negative)})"


def _steer_finish(options: AnalysisOptions, mean: Tensor, clean: float, corrupted: float) -> Finished:
    return Finished(
        mean,
        f"mean metric of the corrupted prompts with the layer's {_vector_source(options)} vector added "
        f"(positions: {options.positions}); unsteered {corrupted:.4f}, clean {clean:.4f}",
        corrupted,
    )


register(
    AnalysisSpec(
        kind="steer",
        summary="steering vectors from the pairs (clean - corrupted), a layer x multiplier sweep with samples",
        explanation=(
            "Steering: at each layer, the mean over pairs of the clean minus corrupted residual stream at the "
            "final token (or, with `positive` and `negative`, the mean over those prompts) is added, times each "
            "multiplier, to the corrupted prompts. A value near the clean "
            "metric means the vector moves the model to the clean behaviour; the samples show the text it "
            "then writes (greedy), beside the unsteered text."
        ),
        per_prompt=False,
        options=COMMON_OPTIONS
        | {"layers", "multipliers", "positions", "n_samples", "max_new_tokens", "positive", "negative"},
        dims=_fixed("layer", "multiplier"),
        compute=_steer,
        finish=_steer_finish,
        figures=("steer_heatmap",),
    )
)


def _generate(options: AnalysisOptions, model: HookedPhi, pairs: PromptPairs, ctx: UnitContext) -> Computed:
    n = min(options.n_samples, len(pairs))
    prompts = [model.tokenizer.decode(pairs.clean_tokens[i, : int(pairs.lengths[i])]) for i in range(n)]
    interventions = _head_interventions(options, model, pairs, n)
    plain = generate(model, prompts, options.max_new_tokens, stop_at_eos=True)
    changed = generate(model, prompts, options.max_new_tokens, interventions=interventions, stop_at_eos=True)
    done = " zero-ablated" if options.head_source == "zero" else " from the corrupted prompt"
    label = (
        "heads " + ", ".join(f"L{la}H{h}" for la, h in options.heads) + done
        if options.heads
        else "no intervention"
    )
    samples = [
        {"prompt": p, "layer": None, "multiplier": 0.0, "text": t}
        for p, t in zip(prompts, plain.texts, strict=True)
    ]
    samples += [
        {"prompt": p, "layer": label, "multiplier": 1.0, "text": t}
        for p, t in zip(prompts, changed.texts, strict=True)
    ]
    same = torch.tensor([float(a == b) for a, b in zip(plain.texts, changed.texts, strict=True)])
    return Computed(
        ("sample",), 1 - same, {"sample": [f"prompt {i}" for i in range(n)]}, {"samples": samples}
    )


def _head_interventions(options: AnalysisOptions, model: HookedPhi, pairs: PromptPairs, n: int) -> list:
    """`heads` zero-ablated at `positions`, or their z patched from each pair's corrupted prompt at the
    prompt's positions (right padding leaves every prompt's own positions as they are)."""
    heads = [tuple(h) for h in options.heads]
    if not heads:
        return []
    if options.head_source == "zero":
        return [AblateHeads(heads, options.positions)]
    names = sorted({f"blocks.{layer}.attn.hook_z" for layer, _ in heads})
    source = cache_activations(model, pairs.corrupted_tokens[:n].to(model.cfg.device), names)
    return [
        PatchFrom(
            name, source[name], "prompt", heads=[h for la, h in heads if f"blocks.{la}.attn.hook_z" == name]
        )
        for name in names
    ]


register(
    AnalysisSpec(
        kind="generate",
        summary="greedy text of the clean prompts, with and without the given heads zero-ablated or patched",
        explanation=(
            "Generation: the model continues the first clean prompts (greedy, with a key/value cache), once as it "
            'is and once with the heads in `heads` zero-ablated at `positions` (head_source = "zero") or writing '
            "what they write on the pair's corrupted prompt (\"corrupted\", at the prompt's positions); a value "
            "of 1 marks a prompt whose text changed."
        ),
        per_prompt=False,
        options=COMMON_OPTIONS | {"heads", "head_source", "positions", "n_samples", "max_new_tokens"},
        dims=_fixed("sample"),
        compute=_generate,
        finish=lambda options, mean, clean, corrupted: Finished(
            mean, "1 = the text changed with the intervention", 0.0
        ),
        figures=(),
    )
)
