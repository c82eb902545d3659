"""Steering vectors: a direction in the residual stream, read from contrasting prompts, added back in.

- `steering_vector(model, pairs, layer)`: the mean over pairs of (clean - corrupted) residual stream
  entering block `layer` at each prompt's final token (contrastive activation addition, Rimsky et al.
  2024); with one pair it is ActAdd (Turner et al. 2023). `steering_vector_from_prompts` takes explicit
  positive and negative prompts instead.
- `steer_sweep(model, pairs, layers, multipliers)`: for each layer a vector from the pairs (or from
  explicit `positive` / `negative` prompts), added with each multiplier to the corrupted prompts
  (positions `"all"` by default, or `"prompt"`; `"generated"` is refused: the scored final prompt
  position is never a generated one); scored by the metric
  (logit difference by default) and the KL divergence from the unsteered run at the final position,
  with greedy samples of steered and unsteered text. Each cell is the vocabulary's `Steer`
  (`SteeringVector.steer`), scored by `run_with_interventions` (`run_on_engine`) and continued by `generate`: the one
  path every intervention runs, no steering code of its own.
- `projection(model, text, vector, layer)`: each token's residual stream projected on the vector's
  direction: where the model already "reads" it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.data.metrics import MetricKind, resolve_metric
from interp.data.prompts import PromptPairs, length_groups
from interp.data.tokens import str_tokens
from interp.engine.forward import PhiWeights
from interp.methods.contrastive import check_inputs
from interp.methods.generation import generate
from interp.methods.generation_checks import integer, real
from interp.methods.hooked_run import engine_gather, run_on_engine
from interp.methods.interventions import Steer, Where
from interp.model.loading import HookedPhi


@dataclass
class SteeringVector:
    """A direction to add to the residual stream entering block `layer`."""

    layer: int
    vector: Float[Tensor, " d_model"]
    n_pairs: int

    def steer(self, multiplier: float = 1.0, positions: Where = "all") -> Steer:
        """The intervention `generate` applies."""
        return Steer(self.layer, self.vector, multiplier, positions)


def _check_layer(model: HookedPhi, layer) -> None:
    n_layers = model.cfg.n_layers
    if isinstance(layer, bool) or not isinstance(layer, Integral) or not 0 <= layer <= n_layers:
        raise InputError(
            f"layer {layer!r} is not allowed; use an integer 0 .. {n_layers} ({n_layers}: the final residual)."
        )


def _residual_point(layer: int, n_layers: int) -> str:
    """The hook point of the residual stream entering block `layer` (`n_layers`: the final one)."""
    return f"blocks.{n_layers - 1}.hook_resid_post" if layer == n_layers else f"blocks.{layer}.hook_resid_pre"


def _final_position(
    model: HookedPhi,
    w: PhiWeights,
    tokens: Int[Tensor, "batch pos"],
    lengths: Int[Tensor, " batch"],
    interventions=(),
    keep: str | None = None,
) -> Float[Tensor, "batch ..."]:
    """[batch d_model or d_vocab] at each prompt's final token: the hook point `keep`'s activation (read
    by the engine's forward, as `Ablate`'s references are), or the logits of `run_with_interventions`
    with `interventions` (a `Steer`: the one path every intervention runs; `run_on_engine`, its engine
    target, on the weights `w` built once). One run per length."""
    gather = engine_gather(model, w)
    out = None
    for rows in length_groups(lengths):
        group = tokens[rows, : int(lengths[rows[0]])]
        if keep:
            value = gather(group, [keep])[keep][:, -1].float()
        else:
            value = run_on_engine(model, w, group, interventions, final_only=True).float()
        if out is None:
            out = torch.empty(len(tokens), value.shape[-1], device=value.device)
        out[rows] = value
    return out


@torch.no_grad()
def steering_vector(model: HookedPhi, pairs: PromptPairs, layer: int) -> SteeringVector:
    """Mean over `pairs` of clean minus corrupted residual stream entering `layer` at the final token."""
    check_inputs(model, pairs, "steering_vector")
    _check_layer(model, layer)
    w = PhiWeights.from_model(model)
    device = model.cfg.device
    point = _residual_point(layer, w.n_layers)
    clean = _final_position(model, w, pairs.clean_tokens.to(device), pairs.lengths, keep=point)
    corrupted = _final_position(model, w, pairs.corrupted_tokens.to(device), pairs.lengths, keep=point)
    return SteeringVector(layer, (clean - corrupted).mean(0), len(pairs))


@torch.no_grad()
def steering_vector_from_prompts(
    model: HookedPhi, positive: Sequence[str], negative: Sequence[str], layer: int
) -> SteeringVector:
    """Mean residual at the final token of `positive` prompts minus that of `negative` ones (ActAdd
    with one of each). The two lists may differ in length and their prompts in token count."""
    _check_layer(model, layer)
    for name, prompts in (("positive", positive), ("negative", negative)):
        if isinstance(prompts, str) or not isinstance(prompts, Sequence):
            raise InputError(f"{name}={prompts!r} is not allowed; use a list of prompts, e.g. [{prompts!r}].")
        if not all(isinstance(p, str) for p in prompts):
            raise InputError(f"{name} holds {prompts!r}; use a list of prompts (strings).")
    if not positive or not negative:
        raise InputError("steering_vector_from_prompts needs at least one positive and one negative prompt.")
    w = PhiWeights.from_model(model)
    device = model.cfg.device
    point = _residual_point(layer, w.n_layers)

    def mean(prompts: Sequence[str]) -> Float[Tensor, " d_model"]:
        rows = [
            model.tokenizer(p, add_special_tokens=False, return_tensors="pt")["input_ids"][0] for p in prompts
        ]
        if any(len(r) == 0 for r in rows):
            raise InputError("a steering prompt is empty; every prompt needs at least one token.")
        lengths = torch.tensor([len(r) for r in rows])
        tokens = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = r
        return _final_position(model, w, tokens.to(device), lengths, keep=point).mean(0)

    return SteeringVector(layer, mean(positive) - mean(negative), min(len(positive), len(negative)))


@dataclass
class SteerSweep:
    """Scores of a multiplier x layer sweep and the text it produced."""

    layers: list[int]
    multipliers: list[float]
    metric: str
    scores: Float[Tensor, "layer multiplier"]  # mean metric of the steered prompts
    kl: Float[Tensor, "layer multiplier"]  # mean KL(unsteered || steered) at the final position
    unsteered: float  # the metric with no vector
    clean: float  # the metric of the clean prompts, for scale
    samples: list[dict] = field(default_factory=list)  # {"prompt", "layer", "multiplier", "text"}

    def _repr_html_(self) -> str:
        from interp.base.html import html_table

        rows = [
            [str(layer), f"{m:g}", f"{self.scores[i, j]:+.3f}", f"{self.kl[i, j]:.3f}"]
            for i, layer in enumerate(self.layers)
            for j, m in enumerate(self.multipliers)
        ]
        head = (
            f"<b>steering sweep</b> ({self.metric}): unsteered {self.unsteered:+.3f}, clean {self.clean:+.3f}"
        )
        return head + html_table(["layer", "multiplier", self.metric, "KL"], rows)


@torch.no_grad()
def steer_sweep(
    model: HookedPhi,
    pairs: PromptPairs,
    layers: Sequence[int],
    multipliers: Sequence[float],
    metric: MetricKind = "logit_diff",
    *,
    positions: Where = "all",
    n_samples: int = 2,
    max_new_tokens: int = 8,
    positive: Sequence[str] | None = None,
    negative: Sequence[str] | None = None,
) -> SteerSweep:
    """Add each layer's vector to the corrupted prompts with each multiplier; score the final
    position, and generate `n_samples` greedy continuations per cell. The vector is the pairs' clean -
    corrupted (CAA), or, given `positive` and `negative` prompts, theirs (`steering_vector_from_prompts`),
    still scored on the pairs."""
    check_inputs(model, pairs, "steer_sweep")
    if positions == "generated":
        raise InputError(
            "steer_sweep positions='generated' is not allowed: the sweep scores the prompt's last position, "
            "which steering only generated positions never reaches (every cell would equal the unsteered "
            "metric, KL 0, while the samples change). Use 'all' or 'prompt'; to see generated-only steering, "
            "generate(model, prompt, n, interventions=[vector.steer(multiplier, 'generated')])."
        )
    if positions not in ("all", "prompt"):
        raise InputError(f"steer_sweep positions={positions!r} is not allowed; use 'all' or 'prompt'.")
    for name, values in (("layers", layers), ("multipliers", multipliers)):
        if isinstance(values, str) or not isinstance(values, Sequence):
            raise InputError(f"steer_sweep {name}={values!r} is not allowed; use a list.")
    if not layers or not multipliers:
        raise InputError("steer_sweep needs at least one layer and one multiplier.")
    multipliers = [real("steer_sweep multiplier", m) for m in multipliers]
    n_samples = integer("n_samples", n_samples, 0)
    max_new_tokens = integer("max_new_tokens", max_new_tokens, 1)
    if (positive is None) != (negative is None):
        raise InputError(
            "steer_sweep takes both positive and negative prompts, or neither (then the pairs')."
        )
    for layer in layers:
        _check_layer(model, layer)
    w = PhiWeights.from_model(model)
    device = model.cfg.device
    everyone = torch.arange(len(pairs))
    base_logits = _final_position(model, w, pairs.corrupted_tokens.to(device), pairs.lengths, ())
    clean_logits = _final_position(model, w, pairs.clean_tokens.to(device), pairs.lengths, ())
    measure = resolve_metric(metric, pairs, clean_logits)
    scores = torch.zeros(len(layers), len(multipliers))
    kl = torch.zeros(len(layers), len(multipliers))
    prompts = [
        model.tokenizer.decode(pairs.corrupted_tokens[i, : int(pairs.lengths[i])])
        for i in range(min(n_samples, len(pairs)))
    ]
    samples = []
    if prompts:
        plain = generate(model, prompts, max_new_tokens, stop_at_eos=False)
        samples += [
            {"prompt": p, "layer": None, "multiplier": 0.0, "text": t}
            for p, t in zip(prompts, plain.texts, strict=True)
        ]
    base_logprobs = base_logits.float().log_softmax(-1)
    for i, layer in enumerate(layers):
        vector = (
            steering_vector(model, pairs, layer)
            if positive is None
            else steering_vector_from_prompts(model, positive, negative, layer)
        )
        for j, multiplier in enumerate(multipliers):
            steer = vector.steer(multiplier, positions)
            logits = _final_position(model, w, pairs.corrupted_tokens.to(device), pairs.lengths, (steer,))
            scores[i, j] = measure(logits, everyone).float().mean().cpu()
            logprobs = logits.float().log_softmax(-1)
            kl[i, j] = (base_logprobs.exp() * (base_logprobs - logprobs)).sum(-1).mean().cpu()
            if prompts:
                out = generate(model, prompts, max_new_tokens, interventions=[steer], stop_at_eos=False)
                samples += [
                    {"prompt": p, "layer": layer, "multiplier": float(multiplier), "text": t}
                    for p, t in zip(prompts, out.texts, strict=True)
                ]
    return SteerSweep(
        list(layers),
        [float(m) for m in multipliers],
        measure.kind,
        scores,
        kl,
        measure(base_logits, everyone).float().mean().item(),
        measure(clean_logits, everyone).float().mean().item(),
        samples,
    )


@torch.no_grad()
def projection(
    model: HookedPhi, text: str, vector: SteeringVector
) -> tuple[list[str], Float[Tensor, " pos"]]:
    """Each token of `text` and its residual stream (entering `vector.layer`) projected on the vector's
    unit direction."""
    if not isinstance(vector, SteeringVector):
        raise InputError(
            f"projection takes a SteeringVector (from steering_vector), not {type(vector).__name__}."
        )
    _check_layer(model, vector.layer)
    w = PhiWeights.from_model(model)
    tokens = (
        model.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(model.cfg.device)
        if isinstance(text, str)
        else None
    )
    if tokens is None or tokens.shape[1] == 0:
        raise InputError(f"projection text={text!r} is not allowed; use a string of at least one token.")
    name = _residual_point(vector.layer, w.n_layers)
    kept = engine_gather(model, w)(tokens, [name])
    unit = vector.vector.float() / vector.vector.float().norm().clamp_min(1e-12)
    return str_tokens(model.tokenizer, tokens[0]), (kept[name][0].float() @ unit.to(kept[name].device)).cpu()
