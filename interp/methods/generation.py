"""Hooked generation: let the model write while an intervention is applied, with a key/value cache.

    out = generate(model, ["When Mary and John went to the store, John gave a drink to"], 10,
                   interventions=[Steer(layer=2, vector=v, multiplier=4.0, positions="generated")])
    out.texts[0]

    # any TransformerLens hook point, and patches from another run's cache
    _, cache = model.run_with_cache(corrupted_tokens)
    generate(model, prompt, 10, interventions=[
        Hook("blocks.1.attn.hook_pattern", lambda pattern, site: pattern * 0.5),
        Patch("blocks.0.attn.hook_z", cache["blocks.0.attn.hook_z"], positions="prompt", heads=[3]),
    ])

    # ablations: zero, or the mean over reference prompts (the engine's forward over them)
    generate(model, prompt, 10, interventions=[Ablate(Component("mlp", 1), "mean", reference=tokens)])

Each step runs only the new position through the model (`interp.engine.incremental`), attending to
the cached keys and values, so a step costs one position, not the whole sequence. Interventions
(`interp.methods.interventions`) act at chosen positions: the prompt's, the generated ones, all, or a
list; since each position runs once, "all" is exactly what a full forward over the whole sequence
with the same intervention computes (tested against recomputing the whole sequence every step, and
against TransformerLens's `run_with_hooks` over the generated text, hook point by hook point).
Prompts of different token lengths run as one left-padded batch (padding masked, each row's rotary
positions counted from its first real token; tested equal to each prompt alone) or, where an
intervention names absolute positions, in one batch per length. Greedy by default; `temperature > 0` samples, seeded. Generation stops at `max_new_tokens` or, per sequence,
at the tokenizer's end-of-text token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.base.errors import InputError, InterpError, ResultsError
from interp.data.prompts import length_groups
from interp.data.tokens import str_tokens
from interp.engine.forward import PhiWeights
from interp.engine.incremental import IncrementalRun, Site, fit_src_pos
from interp.methods.generation_checks import check_generate, describe
from interp.methods.hooked_run import engine_gather
from interp.methods.interventions import Ablate, AblateHeads, Intervention, Steer, compile_edits
from interp.model.hooks import pos_axis, refuse_user_hooks
from interp.model.loading import HookedPhi

Batching = Literal["auto", "padded", "by_length"]


@dataclass
class Generation:
    """What `generate` wrote: per prompt, in the order given."""

    prompts: list[str]
    tokens: list[Tensor]  # per prompt [pos]: prompt and continuation
    new_tokens: list[Tensor]  # per prompt [pos]: the continuation
    texts: list[str]  # the continuations, decoded
    # name -> per prompt, TransformerLens's layout without the batch axis (e.g. [pos d_model])
    activations: dict[str, list[Tensor]] = field(default_factory=dict)
    step_logits: list[Tensor] | None = None  # per prompt [new_pos, d_vocab], with return_logits=True

    def _repr_html_(self) -> str:
        from interp.base.html import html_table

        rows = [[prompt, text] for prompt, text in zip(self.prompts, self.texts, strict=True)]
        return html_table(["prompt", "continuation"], rows)


@torch.no_grad()
def generate(
    model: HookedPhi,
    prompts: str | Sequence[str] | Int[Tensor, "batch pos"] | Int[Tensor, " pos"] | Sequence[Tensor],
    max_new_tokens: int = 20,
    *,
    interventions: Sequence[Intervention] = (),
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int | None = None,
    stop_at_eos: bool = True,
    keep: Sequence[str] = (),
    use_cache: bool = True,
    return_logits: bool = False,
    progress: bool = False,
    batching: Batching = "auto",
) -> Generation:
    """Continue each prompt by up to `max_new_tokens` tokens with `interventions` applied.

    `temperature` 0: greedy; else sample from softmax(logits / temperature), top-`top_k` if given, with
    a generator seeded by `seed` (0 if None; `top_k` and `seed` are refused when greedy, which would
    ignore them). The prompt and its new tokens must fit the model's context (`cfg.n_ctx`); every
    argument is checked before anything runs (`interp.methods.generation_checks`). NaN or +inf
    logits (from a hook's output, say) are an error naming the step and, where one did, the
    intervention that wrote the first NaN or +inf: never a NaN argmax returned as text (-inf logits
    alone, a token banned by a hook, are fine).

    `keep`: hook points whose activations to return for every position (prompt and generated),
    gathered while generating: TransformerLens names ("blocks.3.attn.hook_z",
    "blocks.1.attn.hook_pattern") or "resid_pre.3" / "resid_final". `use_cache=False` recomputes the
    whole sequence each step (the reference the cached path is tested against).

    `batching`: prompts of different token lengths run as one left-padded batch ("padded": padding is
    masked and each row's positions count from its first real token) or in one batch per length
    ("by_length"); "auto" pads when every intervention is a Steer, AblateHeads or Ablate at "all",
    "prompt" or "generated" (Hook, Patch and listed positions name absolute positions, which differ row
    by row under padding) and otherwise groups by length."""
    refuse_user_hooks(model, "generate")
    args = check_generate(
        model, prompts, max_new_tokens, interventions, temperature, top_k, seed, stop_at_eos, keep,
        use_cache, return_logits, progress, batching,
    )  # fmt: skip
    texts, token_lists, keep_points, interventions = (
        args.texts, args.token_lists, args.keep_points, args.interventions,
    )  # fmt: skip
    w = PhiWeights.from_model(model)
    gather = engine_gather(model, w)  # an Ablate's mean: the engine's forward over its reference
    device = model.cfg.device
    eos = model.tokenizer.eos_token_id if stop_at_eos else None
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    n = len(texts)
    out_tokens: list[Tensor | None] = [None] * n
    out_logits: list[Tensor | None] = [None] * n
    out_kept: dict[str, list[Tensor | None]] = {name: [None] * n for name in keep}
    lengths = torch.tensor([len(t) for t in token_lists])
    padded = _padded(batching, interventions, lengths)
    groups = [list(range(n))] if padded else [rows.tolist() for rows in length_groups(lengths)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_new_tokens * len(groups), desc="generate", leave=False)
    for rows in groups:
        width = int(lengths[rows].max())
        pad = width - lengths[rows]  # 0 everywhere unless padded
        prompt = torch.stack(
            [
                torch.cat([token_lists[i].new_zeros(int(p)), token_lists[i]])
                for i, p in zip(rows, pad, strict=True)
            ]
        ).to(device)
        edits = compile_edits(model, interventions, width, rows, n, w.W_E.dtype, w.W_E.device, gather=gather)
        sequence, logits_seen, kept, bad = _generate_group(
            w, prompt, max_new_tokens, edits, sorted(set(keep_points.values())), use_cache,
            temperature, top_k, generator, eos, bar, pad if padded else None,
        )  # fmt: skip
        if bad is not None:
            if bar is not None:
                bar.close()
            raise non_finite_error(
                model, w, interventions, rows, n, width, pad if padded else None, sequence, *bad, texts
            )
        for j, i in enumerate(rows):
            p = int(pad[j])
            out_tokens[i] = sequence[j, p:].cpu()
            out_logits[i] = logits_seen[j].cpu()
            for name, point in keep_points.items():
                out_kept[name][i] = _positions(
                    kept[point][j], point, p, kept[point].shape[pos_axis(point)]
                ).cpu()
    if bar is not None:
        bar.close()
    new_tokens = []
    for i, tokens in enumerate(out_tokens):
        new = tokens[len(token_lists[i]) :]
        if eos is not None and (new == eos).any():
            stop = int((new == eos).nonzero()[0, 0]) + 1
            new = new[:stop]
            out_tokens[i] = tokens[: len(token_lists[i]) + stop]
            out_logits[i] = out_logits[i][:stop]
            for name, point in keep_points.items():
                out_kept[name][i] = _positions(out_kept[name][i], point, 0, len(token_lists[i]) + stop)
        new_tokens.append(new)
    return Generation(
        texts,
        out_tokens,
        new_tokens,
        ["".join(str_tokens(model.tokenizer, t)) for t in new_tokens],
        out_kept,
        out_logits if return_logits else None,
    )


def _padded(
    batching: Batching, interventions: Sequence[Intervention], lengths: Int[Tensor, " batch"]
) -> bool:
    """Whether to run the prompts as one left-padded batch."""
    fits = all(
        isinstance(i, Steer | AblateHeads | Ablate) and isinstance(i.positions, str) for i in interventions
    )
    if batching == "padded" and not fits:
        raise InputError(
            "batching='padded' takes Steer and AblateHeads (and Ablate) at 'all', 'prompt' or 'generated' "
            "only: Hook, Patch and listed positions name absolute positions, which padding shifts row by row. "
            "Use batching='by_length' (or 'auto')."
        )
    return batching == "padded" or (batching == "auto" and fits and len(set(lengths.tolist())) > 1)


def _positions(t: Float[Tensor, " ..."], point: str, start: int, stop: int) -> Float[Tensor, " ..."]:
    """A kept activation (no batch axis) at positions `start .. stop` only (both axes of a pattern):
    a padded row without its padding, or a sequence cut at its end-of-text token."""
    axis = pos_axis(point) - 1
    t = t.narrow(axis, start, stop - start)
    return t[..., start:stop] if axis == 1 else t


def _generate_group(
    w, prompt, max_new_tokens, edits, keep, use_cache, temperature, top_k, generator, eos, bar, pad
):
    """One batch of prompts, equal-length or left-padded by `pad`: (sequences, per-step final logits,
    kept activations, None or the (row, step) of the first NaN or +inf logits, or no finite one)."""
    batch = prompt.shape[0]
    finite = []  # per step [batch] bool, on the device: checked once at the end, no host sync per step
    sequence = prompt
    steps = []
    kept: dict[str, list[Tensor]] = {name: [] for name in keep}
    all_logits = "hook_unembed" in keep
    run = IncrementalRun(w, edits, keep, pad)
    new = prompt
    finished = torch.zeros(batch, dtype=torch.bool, device=prompt.device)
    for _ in range(max_new_tokens):
        if not use_cache:  # the reference: the whole sequence again, from an empty cache
            run, new = IncrementalRun(w, edits, keep, pad), sequence
            kept = {name: [] for name in keep}
        logits, activations = run.extend(new, all_logits=all_logits)
        for name in keep:
            kept[name].append(activations[name])
        last = logits[:, -1].float()
        steps.append(last)
        # one reduction per step, on the device: amax is NaN if any logit is, +inf if any is, -inf if
        # none is finite; -inf logits alone (a token banned by a hook) are fine
        ok = torch.isfinite(last.amax(-1)) | finished  # a finished row's later logits are not used
        finite.append(ok)
        if temperature > 0 and not bool(ok.all()):  # sampling reads the probabilities on the host anyway
            break
        token = _choose(last, temperature, top_k, generator)
        if eos is not None:
            token = torch.where(finished, torch.full_like(token, eos), token)
            finished |= token == eos
        sequence = torch.cat([sequence, token[:, None]], dim=1)
        new = token[:, None]
        if bar is not None:
            bar.update(1)
        if eos is not None and bool(finished.all() | ~ok.all()):  # one sync for both
            break
    ok = torch.stack(finite, dim=1)  # batch step
    if not bool(ok.all()):
        row, step = (~ok).nonzero()[0].tolist()
        return sequence, torch.stack(steps, dim=1), {}, (row, step)
    if keep:  # the last token chosen has not been run: run it for its activations
        _, activations = run.extend(new, all_logits=all_logits)
        for name in keep:
            kept[name].append(activations[name])
    return (
        sequence,
        torch.stack(steps, dim=1),
        {name: _concat(name, parts) for name, parts in kept.items()},
        None,
    )


def non_finite_error(
    model: HookedPhi, w, interventions, rows, n, width, pad, sequence, j, step, texts
) -> InterpError:
    """The error for NaN or infinite logits at generation `step` of the group's row `j`, naming what
    introduced them: the group's forward is replayed up to that step with every edit watched, and
    the first intervention that wrote NaN or +inf where its input had none is blamed (an
    InputError); if none did, the forward itself overflowed (a ResultsError). -inf is not blamed: it
    is how a hook masks a score or bans a token."""
    first: list[tuple[Intervention, Site, int]] = []

    def wrap(item: Intervention, fn):
        def watched(x: Float[Tensor, " ..."], site: Site) -> Float[Tensor, " ..."]:
            out = fn(x, site)
            if not first and not bool(_broken(x[j]).any()) and bool(_broken(out[j]).any()):
                bad = _broken(out[j]).nonzero()[0, pos_axis(site.name) - 1]
                first.append((item, site, site.start + int(bad) - (0 if pad is None else int(pad[j]))))
            return out

        return watched

    edits = compile_edits(
        model, interventions, width, rows, n, w.W_E.dtype, w.W_E.device, wrap, gather=engine_gather(model, w)
    )
    IncrementalRun(w, edits, (), pad).extend(sequence[:, : width + step])
    i = rows[j]
    where = (
        f"generation step {step} (new token {step + 1}) of prompt {i} ({texts[i][:60]!r}) gave NaN or "
        "infinite logits; their argmax would be returned as text"
    )
    if first:
        item, site, position = first[0]
        return InputError(
            f"{where}. {describe(item)} introduced them: it wrote NaN or +inf at {site.name}, first "
            f"at position {position}. Make the intervention finite."
        )
    named = ", ".join(describe(item) for item in interventions) or "none"
    return ResultsError(
        f"{where}. No intervention wrote NaN or +inf (interventions: {named}): the forward "
        "overflowed after them or in the model itself (large multipliers or hook outputs, the weights, or "
        "a dtype too narrow for them: try dtype='float32')."
    )


def _broken(t: Float[Tensor, " ..."]) -> Bool[Tensor, " ..."]:
    """Where `t` is NaN or +inf."""
    return torch.isnan(t) | torch.isposinf(t)


def _concat(point: str, parts: list[Float[Tensor, " ..."]]) -> Float[Tensor, " ..."]:
    """One point's activations from each call, joined along positions; scores and patterns (whose
    source axis grows every step) are first widened to the final length, as the causal mask fills."""
    axis = pos_axis(point)
    if axis == 2:
        parts = [fit_src_pos(t, parts[-1].shape[-1], point) for t in parts]
    return torch.cat(parts, dim=axis)


def _choose(
    logits: Float[Tensor, "batch d_vocab"], temperature: float, top_k: int | None, generator: torch.Generator
) -> Int[Tensor, " batch"]:
    if temperature == 0:
        return logits.argmax(-1)
    scaled = logits / temperature
    if top_k is not None:
        threshold = scaled.topk(min(top_k, scaled.shape[-1]), dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < threshold, float("-inf"))
    probs = scaled.softmax(-1).cpu()
    if not bool(torch.isfinite(probs).all()):  # the logits are finite: logits / temperature overflowed
        raise InputError(
            f"temperature={temperature!r} is too small to sample with (logits / temperature overflow); use "
            "temperature=0 for greedy decoding, or a larger temperature."
        )
    return torch.multinomial(probs, 1, generator=generator)[:, 0].to(logits.device)
