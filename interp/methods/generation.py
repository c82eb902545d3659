"""Hooked generation: let the model write while an intervention is applied, with a key/value cache.

    out = generate(model, ["When Mary and John went to the store, John gave a drink to"], 10,
                   interventions=[Steer(layer=2, vector=v, multiplier=4.0, positions="generated")])
    out.texts[0]

Each step runs only the new position through the model (`interp.engine.incremental`), attending to
the cached keys and values, so a step costs one position, not the whole sequence. Interventions act at
chosen positions: the prompt's, the generated ones, or all; since each position runs once, "all" is
exactly what a full forward over the whole sequence with the same intervention computes (tested
against recomputing the whole sequence every step). Prompts of different token lengths are generated
in groups of equal length, so there is no padding that could change any prompt's text. Greedy by
default; `temperature > 0` samples, seeded. Generation stops at `max_new_tokens` or, per sequence,
at the tokenizer's end-of-text token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.data.tokens import str_tokens
from interp.engine.forward import PhiWeights
from interp.engine.incremental import IncrementalRun
from interp.model.hooks import refuse_user_hooks
from interp.model.loading import HookedPhi

Where = Literal["all", "prompt", "generated"]


@dataclass
class Steer:
    """Add `multiplier * vector` to the residual stream entering block `layer` at `positions`
    (`layer == n_layers`: the final residual, just before the unembedding)."""

    layer: int
    vector: Float[Tensor, " d_model"]
    multiplier: float = 1.0
    positions: Where = "all"


@dataclass
class AblateHeads:
    """Zero the `z` of each (layer, head) in `heads` at `positions` (its write to the residual goes)."""

    heads: list[tuple[int, int]]
    positions: Where = "all"


Intervention = Steer | AblateHeads


@dataclass
class Generation:
    """What `generate` wrote: per prompt, in the order given."""

    prompts: list[str]
    tokens: list[Tensor]  # per prompt [pos]: prompt and continuation
    new_tokens: list[Tensor]  # per prompt [pos]: the continuation
    texts: list[str]  # the continuations, decoded
    activations: dict[str, list[Tensor]] = field(default_factory=dict)  # name -> per prompt [pos, d_model]
    step_logits: list[Tensor] | None = None  # per prompt [new_pos, d_vocab], with return_logits=True

    def _repr_html_(self) -> str:
        from interp.base.html import html_table

        rows = [[prompt, text] for prompt, text in zip(self.prompts, self.texts, strict=True)]
        return html_table(["prompt", "continuation"], rows)


def _mask(where: Where, positions: Tensor, n_prompt: int) -> Tensor:
    if where == "all":
        return torch.ones_like(positions, dtype=torch.bool)
    return positions < n_prompt if where == "prompt" else positions >= n_prompt


def _check(model: HookedPhi, interventions: Sequence[Intervention]) -> None:
    cfg = model.cfg
    for item in interventions:
        if item.positions not in ("all", "prompt", "generated"):
            raise InputError(
                f"positions={item.positions!r} is not allowed; use 'all', 'prompt' or 'generated'."
            )
        if isinstance(item, Steer):
            if not 0 <= item.layer <= cfg.n_layers:
                raise InputError(
                    f"Steer layer {item.layer} is not allowed; use 0 .. {cfg.n_layers} ({cfg.n_layers}: the final residual)."
                )
            if tuple(item.vector.shape) != (cfg.d_model,):
                raise InputError(
                    f"a steering vector must have shape ({cfg.d_model},), not {tuple(item.vector.shape)}."
                )
        elif isinstance(item, AblateHeads):
            bad = [(la, h) for la, h in item.heads if not (0 <= la < cfg.n_layers and 0 <= h < cfg.n_heads)]
            if bad:
                raise InputError(
                    f"heads {bad} are not heads of this model ({cfg.n_layers} layers x {cfg.n_heads} heads)."
                )
        else:
            raise InputError(f"{item!r} is not an intervention; use Steer or AblateHeads.")


def intervention_edits(w: PhiWeights, interventions: Sequence[Intervention], n_prompt: int):
    steers = [i for i in interventions if isinstance(i, Steer)]
    ablations = [i for i in interventions if isinstance(i, AblateHeads)]

    def edit_resid(layer: int, x: Tensor, positions: Tensor) -> Tensor:
        for steer in steers:
            if steer.layer == layer:
                at = _mask(steer.positions, positions, n_prompt).to(x.dtype)[:, None]  # pos 1
                x = x + steer.multiplier * at * steer.vector.to(x.device, x.dtype)
        return x

    def edit_z(layer: int, z: Tensor, positions: Tensor) -> Tensor:  # z: batch pos head d_head
        for ablation in ablations:
            heads = [h for la, h in ablation.heads if la == layer]
            if heads:
                keep = torch.ones(z.shape[-3:-1], dtype=z.dtype, device=z.device)  # pos head
                keep[_mask(ablation.positions, positions, n_prompt)[:, None] & _head_mask(heads, z)] = 0
                z = z * keep[..., None]
        return z

    return (edit_resid if steers else None), (edit_z if ablations else None)


def _head_mask(heads: list[int], z: Tensor) -> Tensor:
    mask = torch.zeros(z.shape[-2], dtype=torch.bool, device=z.device)
    mask[heads] = True
    return mask[None, :]


def _tokenize(model: HookedPhi, prompts) -> tuple[list[str], list[Tensor]]:
    if isinstance(prompts, str):
        prompts = [prompts]
    if isinstance(prompts, Tensor):
        rows = prompts.reshape(-1, prompts.shape[-1]) if prompts.dim() > 1 else prompts[None]
        token_lists = [row.long() for row in rows]
        return [model.tokenizer.decode(t) for t in token_lists], token_lists
    texts = list(prompts)
    if not texts or not all(isinstance(t, str) and t for t in texts):
        raise InputError(
            "prompts must be a non-empty string, a list of non-empty strings, or a tensor of token ids."
        )
    token_lists = [
        model.tokenizer(t, add_special_tokens=False, return_tensors="pt")["input_ids"][0] for t in texts
    ]
    return texts, token_lists


@torch.no_grad()
def generate(
    model: HookedPhi,
    prompts: str | Sequence[str] | Int[Tensor, "batch pos"],
    max_new_tokens: int = 20,
    *,
    interventions: Sequence[Intervention] = (),
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int = 0,
    stop_at_eos: bool = True,
    keep: Sequence[str] = (),
    use_cache: bool = True,
    return_logits: bool = False,
    progress: bool = False,
) -> Generation:
    """Continue each prompt by up to `max_new_tokens` tokens with `interventions` applied.

    `temperature` 0: greedy; else sample from softmax(logits / temperature), top-`top_k` if given, with
    a generator seeded by `seed`. `keep`: residual streams to return for every position (prompt and
    generated), e.g. "resid_pre.3" or "resid_final", gathered while generating. `use_cache=False`
    recomputes the whole sequence each step (the reference the cached path is tested against)."""
    refuse_user_hooks(model, "generate")
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens={max_new_tokens} is not allowed; use 1 or more.")
    if temperature < 0:
        raise InputError(f"temperature={temperature} is not allowed; use 0 (greedy) or more.")
    _check(model, interventions)
    allowed = {f"resid_pre.{layer}" for layer in range(model.cfg.n_layers)} | {"resid_final"}
    unknown = [name for name in keep if name not in allowed]
    if unknown:
        raise InputError(
            f"keep={unknown} is not allowed; use 'resid_pre.0' .. 'resid_pre.{model.cfg.n_layers - 1}' or 'resid_final'."
        )
    w = PhiWeights.from_model(model)
    device = model.cfg.device
    texts, token_lists = _tokenize(model, prompts)
    eos = model.tokenizer.eos_token_id if stop_at_eos else None
    generator = torch.Generator(device="cpu").manual_seed(seed)
    n = len(texts)
    out_tokens: list[Tensor | None] = [None] * n
    out_logits: list[Tensor | None] = [None] * n
    out_kept: dict[str, list[Tensor | None]] = {name: [None] * n for name in keep}
    lengths = torch.tensor([len(t) for t in token_lists])
    groups = [
        torch.nonzero(lengths == length).flatten().tolist() for length in torch.unique(lengths).tolist()
    ]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_new_tokens * len(groups), desc="generate", leave=False)
    for rows in groups:
        prompt = torch.stack([token_lists[i] for i in rows]).to(device)
        edit_resid, edit_z = intervention_edits(w, interventions, prompt.shape[1])
        sequence, logits_seen, kept = _generate_group(
            w, prompt, max_new_tokens, edit_resid, edit_z, tuple(keep), use_cache,
            temperature, top_k, generator, eos, bar,
        )  # fmt: skip
        for j, i in enumerate(rows):
            out_tokens[i] = sequence[j].cpu()
            out_logits[i] = logits_seen[j].cpu()
            for name in keep:
                out_kept[name][i] = kept[name][j].cpu()
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
            for name in keep:
                out_kept[name][i] = out_kept[name][i][: len(token_lists[i]) + stop]
        new_tokens.append(new)
    return Generation(
        texts,
        out_tokens,
        new_tokens,
        ["".join(str_tokens(model.tokenizer, t)) for t in new_tokens],
        out_kept,
        out_logits if return_logits else None,
    )


def _generate_group(
    w, prompt, max_new_tokens, edit_resid, edit_z, keep, use_cache, temperature, top_k, generator, eos, bar
):
    """One batch of equal-length prompts: (sequences, per-step final logits, kept activations)."""
    batch = prompt.shape[0]
    sequence = prompt
    steps = []
    kept: dict[str, list[Tensor]] = {name: [] for name in keep}
    run = IncrementalRun(w, edit_resid, edit_z, keep)
    new = prompt
    finished = torch.zeros(batch, dtype=torch.bool, device=prompt.device)
    for _ in range(max_new_tokens):
        if not use_cache:  # the reference: the whole sequence again, from an empty cache
            run, new = IncrementalRun(w, edit_resid, edit_z, keep), sequence
            kept = {name: [] for name in keep}
        logits, activations = run.extend(new)
        for name in keep:
            kept[name].append(activations[name])
        last = logits[:, -1].float()
        steps.append(last)
        token = _choose(last, temperature, top_k, generator)
        if eos is not None:
            token = torch.where(finished, torch.full_like(token, eos), token)
            finished |= token == eos
        sequence = torch.cat([sequence, token[:, None]], dim=1)
        new = token[:, None]
        if bar is not None:
            bar.update(1)
        if eos is not None and bool(finished.all()):
            break
    if keep:  # the last token chosen has not been run: run it for its activations
        _, activations = run.extend(new)
        for name in keep:
            kept[name].append(activations[name])
    return (
        sequence,
        torch.stack(steps, dim=1),
        {name: torch.cat(parts, dim=1) for name, parts in kept.items()},
    )


def _choose(logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator) -> Tensor:
    if temperature == 0:
        return logits.argmax(-1)
    scaled = logits / temperature
    if top_k is not None:
        threshold = scaled.topk(min(top_k, scaled.shape[-1]), dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < threshold, float("-inf"))
    probs = scaled.softmax(-1).cpu()
    return torch.multinomial(probs, 1, generator=generator)[:, 0].to(logits.device)
