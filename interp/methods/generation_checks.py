"""Every argument of `generate` and of the interventions it applies, checked in one place before
anything runs.

Each refusal is an `InputError` naming the argument, the value given and what is allowed: a float
where a count is meant, a non-finite temperature or multiplier, token ids outside the vocabulary,
a prompt (with its new tokens) longer than the model's context, a position that is never run, a
steering vector of the wrong shape or dtype, a patch source of the wrong layout. Token ids are
never cast: a float tensor of ids is refused, not rounded. `steering` uses the same scalar checks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real

import torch
from jaxtyping import Int, Shaped
from torch import Tensor

from interp.base.errors import InputError
from interp.methods.interventions import (
    KINDS,
    Ablate,
    AblateHeads,
    Component,
    Hook,
    Intervention,
    Patch,
    Resolve,
    Steer,
    layout,
    resolve_point,
)
from interp.methods.vocabulary import ABLATION_METHODS, check_method
from interp.model.hooks import head_axis, pos_axis
from interp.model.loading import HookedPhi

BATCHING = ("auto", "padded", "by_length")
GENERATE_KINDS = (Steer, AblateHeads, Hook, Patch, Ablate)  # what generate runs
GENERATE_ABLATIONS = ("zero", "mean")  # an Ablate's methods generate gives
WHERE = ("all", "prompt", "generated")


def integer(name: str, value, minimum: int, maximum: int | None = None) -> int:
    """`value` as an int if it is an integer (not a bool, not a float) in minimum .. maximum."""
    allowed = f"an integer >= {minimum}" if maximum is None else f"an integer in {minimum} .. {maximum}"
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise InputError(f"{name}={value!r} is not allowed; use {allowed}.")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        raise InputError(f"{name}={value} is not allowed; use {allowed}.")
    return value


def real(name: str, value, minimum: float | None = None) -> float:
    """`value` as a float if it is a finite real number (not a bool), >= minimum if given."""
    allowed = "a finite number" + ("" if minimum is None else f" >= {minimum:g}")
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise InputError(f"{name}={value!r} is not allowed; use {allowed}.")
    if minimum is not None and value < minimum:
        raise InputError(f"{name}={value!r} is not allowed; use {allowed}.")
    return float(value)


def flag(name: str, value) -> bool:
    """`value` if it is True or False (a string such as "no" would count as true)."""
    if not isinstance(value, bool):
        raise InputError(f"{name}={value!r} is not allowed; use True or False.")
    return value


@dataclass
class GenerateArgs:
    """`generate`'s arguments once checked: the prompts as text and token ids, the engine points to keep."""

    texts: list[str]
    token_lists: list[Tensor]  # per prompt [pos], int64 on the CPU
    keep_points: dict[str, str]  # name given -> engine point
    interventions: list[Intervention]
    seed: int


def check_generate(
    model: HookedPhi,
    prompts,
    max_new_tokens,
    interventions,
    temperature,
    top_k,
    seed,
    stop_at_eos,
    keep,
    use_cache,
    return_logits,
    progress,
    batching,
) -> GenerateArgs:
    """Every argument of `generate`, or an `InputError` naming the first one that is not allowed."""
    cfg = model.cfg
    max_new_tokens = integer("max_new_tokens", max_new_tokens, 1)
    temperature = real("temperature", temperature, 0.0)
    if top_k is not None:
        top_k = integer("top_k", top_k, 1, cfg.d_vocab)
        if temperature == 0:
            raise InputError(
                f"top_k={top_k} applies only when sampling; with temperature=0 (greedy) it would be ignored. "
                "Use temperature > 0 or top_k=None."
            )
    if seed is not None:
        seed = integer("seed", seed, 0, 2**64 - 1)
        if temperature == 0:
            raise InputError(
                f"seed={seed} applies only when sampling; with temperature=0 (greedy) it would be ignored. "
                "Use temperature > 0 or seed=None."
            )
    for name, value in (
        ("stop_at_eos", stop_at_eos),
        ("use_cache", use_cache),
        ("return_logits", return_logits),
        ("progress", progress),
    ):
        flag(name, value)
    if batching not in BATCHING:
        raise InputError(f"batching={batching!r} is not allowed; use 'auto', 'padded' or 'by_length'.")
    if isinstance(keep, str) or not isinstance(keep, Sequence):
        raise InputError(
            f"keep={keep!r} is not allowed; use a list of hook point names, e.g. keep=['resid_final']."
        )
    keep_points = keep_to_points(model, keep)
    texts, token_lists = tokenize(model, prompts)
    longest = max(len(t) for t in token_lists)
    n_ctx = getattr(cfg, "n_ctx", None)
    if n_ctx is not None and longest + max_new_tokens > n_ctx:
        which = "The longest prompt" if len(token_lists) > 1 else "The prompt"
        fits = (
            f"max_new_tokens <= {n_ctx - longest}"
            if longest < n_ctx
            else f"a prompt of at most {n_ctx - 1} tokens"
        )
        raise InputError(
            f"{which} has {longest} tokens; with max_new_tokens={max_new_tokens} the sequence would reach "
            f"{longest + max_new_tokens} tokens, more than the model's context of {n_ctx} (positions past it "
            f"have no trained meaning). Use {fits}."
        )
    if isinstance(interventions, Ablate | Patch | Steer | AblateHeads | Hook):
        raise InputError(
            f"interventions takes a list; use interventions=[{type(interventions).__name__}(...)]."
        )
    if isinstance(interventions, str) or not isinstance(interventions, Sequence):
        raise InputError(
            f"interventions={interventions!r} is not allowed; use a list of Steer, AblateHeads, Hook, Patch "
            "or Ablate."
        )
    # positions 0 .. reach - 1 are run (the last token chosen only when its activations are kept)
    reach = longest + max_new_tokens - 1 + (1 if keep_points else 0)
    check_interventions(model, interventions, len(token_lists), longest, reach, kinds=GENERATE_KINDS)
    for item in interventions:
        if isinstance(item, Ablate) and item.method not in GENERATE_ABLATIONS:
            raise InputError(
                f"{describe(item)}: generate ablates with 'zero' or 'mean' (the same values at every "
                f"position); {item.method!r} takes a reference prompt's value at each position, which "
                "the generated positions do not have. Use run_with_interventions for it."
            )
    return GenerateArgs(texts, token_lists, keep_points, list(interventions), 0 if seed is None else seed)


def keep_to_points(model: HookedPhi, keep) -> dict[str, str]:
    """Each name in `keep` -> the engine point it names ("resid_pre.3" and "resid_final" accepted)."""
    n_layers = model.cfg.n_layers
    out = {}
    for name in keep:
        if not isinstance(name, str):
            raise InputError(f"keep holds {name!r}; use hook point names (strings).")
        if name == "resid_final":
            out[name] = f"blocks.{n_layers - 1}.hook_resid_post"
        elif name.startswith("resid_pre.") and name[len("resid_pre.") :].isdigit():
            layer = int(name[len("resid_pre.") :])
            if layer >= n_layers:
                raise InputError(
                    f"keep={name!r} is not allowed; use 'resid_pre.0' .. 'resid_pre.{n_layers - 1}', "
                    "'resid_final' or a TransformerLens hook name."
                )
            out[name] = f"blocks.{layer}.hook_resid_pre"
        else:
            out[name] = resolve_point(model, name)
    return out


_PROMPTS = (
    "a non-empty string, a list of non-empty strings, a tensor of token ids [batch pos] or [pos], or a "
    "list of 1-d token-id tensors"
)


def _token_ids(t: Shaped[Tensor, " ..."], what: str, d_vocab: int) -> Int[Tensor, " ..."]:
    """A tensor of token ids checked: an integer dtype (never cast), at least one position, in the vocabulary."""
    if t.dtype == torch.bool or t.dtype.is_floating_point or t.dtype.is_complex:
        raise InputError(
            f"{what} has dtype {t.dtype}; token ids are integers (torch.long). A float tensor is not cast, "
            "since its values need not be token ids."
        )
    if t.shape[-1] == 0 or t.numel() == 0:
        raise InputError(f"{what} has shape {tuple(t.shape)}; every prompt needs at least one token.")
    low, high = int(t.min()), int(t.max())
    if low < 0 or high >= d_vocab:
        raise InputError(
            f"{what} holds token ids {low} .. {high}, outside the model's vocabulary 0 .. {d_vocab - 1}."
        )
    return t.long().cpu()


def tokenize(model: HookedPhi, prompts) -> tuple[list[str], list[Tensor]]:
    """The prompts as text and as token ids (one 1-d tensor each), or an error saying what is allowed."""
    d_vocab = model.cfg.d_vocab
    if isinstance(prompts, str):
        prompts = [prompts]
    if isinstance(prompts, Tensor):
        if prompts.dim() not in (1, 2):
            raise InputError(f"prompts has shape {tuple(prompts.shape)}; use {_PROMPTS}.")
        if prompts.numel() == 0:
            raise InputError(
                f"prompts has shape {tuple(prompts.shape)}; every prompt needs at least one token."
            )
        tokens = _token_ids(prompts if prompts.dim() == 2 else prompts[None], "prompts", d_vocab)
        token_lists = list(tokens)
        return [model.tokenizer.decode(t) for t in token_lists], token_lists
    if not isinstance(prompts, Sequence) or len(prompts) == 0:
        raise InputError(f"prompts={prompts!r} is not allowed; use {_PROMPTS}.")
    texts = list(prompts)
    if all(isinstance(t, Tensor) for t in texts):
        token_lists = []
        for i, t in enumerate(texts):
            if t.dim() != 1:
                raise InputError(
                    f"prompts[{i}] has shape {tuple(t.shape)}; a list of prompts holds 1-d tensors."
                )
            token_lists.append(_token_ids(t, f"prompts[{i}]", d_vocab))
        return [model.tokenizer.decode(t) for t in token_lists], token_lists
    if not all(isinstance(t, str) and t for t in texts):
        raise InputError(
            f"prompts holds {next(t for t in texts if not (isinstance(t, str) and t))!r}; use {_PROMPTS}."
        )
    token_lists = [
        model.tokenizer(t, add_special_tokens=False, return_tensors="pt")["input_ids"][0] for t in texts
    ]
    for text, tokens in zip(texts, token_lists, strict=True):
        if len(tokens) == 0:
            raise InputError(f"the prompt {text!r} has no tokens; every prompt needs at least one.")
    return texts, token_lists


def check_positions(positions, what: str, reach: int | None = None) -> None:
    """ "all", "prompt", "generated" or a non-empty list of absolute positions, each < `reach` (those run)."""
    if isinstance(positions, str):
        if positions not in WHERE:
            raise InputError(
                f"{what} positions={positions!r} is not allowed; use 'all', 'prompt', 'generated' or a list "
                "of positions."
            )
        return
    if isinstance(positions, Integral) and not isinstance(positions, bool):
        raise InputError(
            f"{what} positions={positions!r} is not allowed; a list of positions, e.g. [{positions}]."
        )
    if not isinstance(positions, Sequence | range) or len(positions) == 0:
        raise InputError(
            f"{what} positions={positions!r} is not allowed; use 'all', 'prompt', 'generated' or a non-empty "
            "list of positions."
        )
    if not all(isinstance(p, Integral) and not isinstance(p, bool) and p >= 0 for p in positions):
        raise InputError(
            f"{what} positions={positions!r} is not allowed; absolute positions are integers >= 0."
        )
    never = sorted(int(p) for p in positions if reach is not None and p >= reach)
    if never:
        raise InputError(
            f"{what} positions {never} are never run: this generation runs positions 0 .. {reach - 1} (the "
            "longest prompt and the new tokens, the last of which is only chosen). Use positions below "
            f"{reach}, or more max_new_tokens."
        )


def describe(item) -> str:
    """A short name for an intervention in a message."""
    if isinstance(item, Steer):
        return f"Steer(layer={item.layer!r}, multiplier={item.multiplier!r})"
    if isinstance(item, AblateHeads):
        return "AblateHeads"
    if isinstance(item, Ablate):
        return f"Ablate({item.component!r}, {item.method!r})"
    return f"{type(item).__name__}({(item.hook if isinstance(item, Patch) else item.name)!r})"


def check_interventions(
    model: HookedPhi,
    interventions,
    n_prompts: int | None = None,
    longest: int | None = None,
    reach: int | None = None,
    *,
    resolve: Resolve = resolve_point,
    kinds: tuple[type, ...] = (Steer, AblateHeads, Hook, Patch),
) -> None:
    """Every intervention well-formed for this model (and, given them, for `n_prompts` prompts whose
    longest has `longest` tokens, running positions below `reach`), or an error naming what is wrong.
    `resolve` names the hook points the target offers, `kinds` the interventions it runs."""
    cfg = model.cfg
    for item in interventions:
        if not isinstance(item, kinds):
            names = [k.__name__ for k in kinds]
            allowed = ", ".join(names[:-1]) + f" or {names[-1]}"
            if isinstance(item, KINDS):
                raise InputError(f"{type(item).__name__} is not run here; use {allowed}.")
            raise InputError(f"{item!r} is not an intervention; use {allowed}.")
        what = describe(item)
        check_positions(item.positions, what, reach)
        if item.positions == "generated" and longest is not None and reach is not None and reach <= longest:
            raise InputError(
                f"{what} at positions='generated' would change nothing: with max_new_tokens=1 the one new token "
                "is chosen from the prompt's last position, and no generated position is run. Use more "
                "max_new_tokens, or positions 'all' / 'prompt' to change the first new token."
            )
        if isinstance(item, Steer):
            _check_steer(cfg, item)
        elif isinstance(item, AblateHeads):
            _check_heads(cfg, item.heads)
        elif isinstance(item, Hook):
            if not isinstance(item.name, str):
                raise InputError(f"Hook name {item.name!r} is not allowed; use a hook point name (a string).")
            resolve(model, item.name)
            if not callable(item.fn):
                raise InputError(
                    f"Hook({item.name!r}) needs a function fn(activation, site), not {item.fn!r}."
                )
        elif isinstance(item, Ablate):
            _check_ablate(model, item, n_prompts, resolve)
        else:
            _check_patch(model, item, n_prompts, resolve)


def _check_ablate(model: HookedPhi, item: Ablate, n_prompts: int | None, resolve: Resolve) -> None:
    check_method(item.method, ABLATION_METHODS)
    if isinstance(item.component, Component):
        item.component.validate(model)
        resolve(model, item.component.hook)
    elif isinstance(item.component, str):
        resolve(model, item.component)
    else:
        raise InputError(
            f"Ablate component {item.component!r} is not allowed; use a Component (head, attn, mlp or "
            "neuron) or a hook point name."
        )
    if item.method == "zero":
        return
    reference = item.reference

    def token_ids(t) -> bool:
        return isinstance(t, Tensor) and t.dim() == 2 and not t.dtype.is_floating_point and t.numel() > 0

    if item.method == "mean" and isinstance(reference, Sequence) and not isinstance(reference, str):
        if len(reference) == 0 or not all(token_ids(t) for t in reference):
            raise InputError(
                f"Ablate({item.component!r}, 'mean') reference is a list; each entry must be token ids "
                "[batch pos] (prompts of one length per entry), and the list non-empty."
            )
        return
    if not token_ids(reference):
        several = " (a list of them only for 'mean')" if isinstance(reference, Sequence) else ""
        raise InputError(
            f"Ablate({item.component!r}, {item.method!r}) needs reference token ids [batch pos] (the prompts "
            f"to average or take values from){several}, not {type(reference).__name__}."
        )
    if item.method == "counterfactual" and n_prompts is not None and reference.shape[0] != n_prompts:
        raise InputError(
            f"counterfactual ablation takes reference row i for prompt i: the reference has "
            f"{reference.shape[0]} prompts, the input {n_prompts}; give one reference prompt per prompt."
        )


def _check_steer(cfg, item) -> None:
    n_layers = cfg.n_layers
    if (
        isinstance(item.layer, bool)
        or not isinstance(item.layer, Integral)
        or not 0 <= item.layer <= n_layers
    ):
        raise InputError(
            f"Steer layer {item.layer!r} is not allowed; use an integer 0 .. {n_layers} ({n_layers}: the final "
            "residual)."
        )
    vector = item.vector
    if not isinstance(vector, Tensor):
        raise InputError(
            f"Steer(layer={item.layer}) vector is a {type(vector).__name__}; use a float tensor of shape "
            f"({cfg.d_model},)."
        )
    if tuple(vector.shape) != (cfg.d_model,):
        raise InputError(f"a steering vector must have shape ({cfg.d_model},), not {tuple(vector.shape)}.")
    if not vector.dtype.is_floating_point:
        raise InputError(
            f"Steer(layer={item.layer}) vector has dtype {vector.dtype}; use a floating-point tensor "
            f"(an integer vector is not cast)."
        )
    if not bool(torch.isfinite(vector).all()):
        bad = int((~torch.isfinite(vector)).sum())
        raise InputError(
            f"Steer(layer={item.layer}) vector has {bad} non-finite entries (NaN or inf); they would make "
            "every logit NaN. Use a finite vector."
        )
    real(f"Steer(layer={item.layer}) multiplier", item.multiplier)


def _check_heads(cfg, heads) -> None:
    allowed = f"(layer, head) pairs, layer 0 .. {cfg.n_layers - 1}, head 0 .. {cfg.n_heads - 1}"
    if isinstance(heads, str) or not isinstance(heads, Sequence) or len(heads) == 0:
        raise InputError(f"AblateHeads heads={heads!r} is not allowed; use a non-empty list of {allowed}.")
    for pair in heads:
        if (
            isinstance(pair, str)
            or not isinstance(pair, Sequence)
            or len(pair) != 2
            or not all(isinstance(i, Integral) and not isinstance(i, bool) for i in pair)
        ):
            raise InputError(f"AblateHeads holds {pair!r}; use {allowed}, e.g. [(0, 1)].")
    bad = [tuple(p) for p in heads if not (0 <= p[0] < cfg.n_layers and 0 <= p[1] < cfg.n_heads)]
    if bad:
        raise InputError(
            f"heads {bad} are not heads of this model ({cfg.n_layers} layers x {cfg.n_heads} heads)."
        )


def _point_shape(cfg, name: str) -> tuple[int | None, ...]:
    """The point's shape without the batch axis, None on position axes."""
    point = layout(name)
    if point.startswith("batch head"):
        return (cfg.n_heads, None, None)
    sizes = {"head": cfg.n_heads, "d_head": cfg.d_head, "d_mlp": cfg.d_mlp, "d_vocab": cfg.d_vocab, "1": 1}
    sizes["d_model"] = cfg.d_model  # other dims (a dictionary's d_sae) are not checked here
    return tuple(None if dim == "pos" else sizes.get(dim) for dim in point.split()[1:])


def _check_patch(model: HookedPhi, item, n_prompts: int | None, resolve: Resolve) -> None:
    cfg = model.cfg
    if not isinstance(item.hook, str):
        raise InputError(f"Patch hook {item.hook!r} is not allowed; use a hook point name (a string).")
    name = resolve(model, item.hook)
    source = item.source
    if not isinstance(source, Tensor):
        raise InputError(f"Patch({item.hook!r}) needs a tensor source, not {type(source).__name__}.")
    if not source.dtype.is_floating_point:
        raise InputError(
            f"Patch({item.hook!r}) source has dtype {source.dtype}; use a floating-point activation "
            "(e.g. cache[name] from model.run_with_cache)."
        )
    tail = _point_shape(cfg, name)
    ndim = len(tail) + 1
    if source.dim() not in (ndim, ndim - 1):
        raise InputError(
            f"Patch({item.hook!r}) source has {source.dim()} axes; {name} has {ndim} "
            f"({layout(name)}), or {ndim - 1} without the batch."
        )
    if source.dim() == ndim and n_prompts is not None and source.shape[0] not in (1, n_prompts):
        raise InputError(
            f"Patch({item.hook!r}) source has a batch of {source.shape[0]}; use 1 or one row per "
            f"prompt ({n_prompts})."
        )
    got = tuple(source.shape[source.dim() - len(tail) :])
    if any(want is not None and have != want for have, want in zip(got, tail, strict=True)):
        expected = tuple("pos" if want is None else want for want in tail)
        raise InputError(
            f"Patch({item.hook!r}) source has shape {tuple(source.shape)}; {name} is "
            f"{layout(name)} = (batch, {', '.join(map(str, expected))}) for this model."
        )
    if source.shape[pos_axis(name) - (ndim - source.dim())] == 0:
        raise InputError(f"Patch({item.hook!r}) source has no positions (shape {tuple(source.shape)}).")
    if not bool(torch.isfinite(source).all()):
        raise InputError(
            f"Patch({item.hook!r}) source holds non-finite values (NaN or inf); they would make the "
            "logits NaN. Use a finite activation."
        )
    if item.heads is not None:
        if head_axis(name) is None:
            raise InputError(
                f"Patch({item.hook!r}) heads={item.heads!r}: {name} ({layout(name)}) has no head axis; "
                "leave heads=None, or use a point with one (attn.hook_q, hook_k, hook_v, hook_rot_q, "
                "hook_rot_k, hook_attn_scores, hook_pattern, hook_z, hook_result, or the split receiver "
                "inputs hook_q_input, hook_k_input, hook_v_input)."
            )
        if (
            isinstance(item.heads, str)
            or not isinstance(item.heads, Sequence)
            or len(item.heads) == 0
            or not all(isinstance(h, Integral) and not isinstance(h, bool) for h in item.heads)
        ):
            raise InputError(
                f"Patch({item.hook!r}) heads={item.heads!r} is not allowed; use None (every head) or a "
                f"non-empty list of heads 0 .. {cfg.n_heads - 1}."
            )
        bad = [h for h in item.heads if not 0 <= h < cfg.n_heads]
        if bad:
            raise InputError(f"Patch heads {bad} are not heads of this model (0 .. {cfg.n_heads - 1}).")
