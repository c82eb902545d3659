"""Generation (`generate`): greedy text with and without heads changed, `interp.methods.generation.generate`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt

from interp.base.errors import InputError
from interp.runner.options import AnalysisOptions, Where, heads_problem
from interp.runner.registry import AnalysisSpec, Computed, Finished, UnitContext, fixed, register

CORRUPTED_AT_PROMPT = (
    "head_source = 'corrupted' patches the prompt's positions only (generated tokens have no corrupted "
    "counterpart)"
)


class GenerateOptions(AnalysisOptions):
    """`generate`: continue the first clean prompts, as they are and with `heads` changed."""

    kind: Literal["generate"]
    heads: list[tuple[NonNegativeInt, NonNegativeInt]] = Field(
        default_factory=list, description="[[layer, head], ...] changed while generating (empty: none)"
    )
    head_source: Literal["zero", "corrupted"] = Field(
        "zero",
        description="what the heads write: nothing (zero), or what they write on the pair's corrupted "
        "prompt (at the prompt's positions; generated tokens have no corrupted counterpart)",
    )
    positions: Where = Field(
        "all", description="where zero-ablated heads are zeroed: all, prompt or generated positions"
    )
    n_samples: int = Field(2, ge=1, le=64, description="clean prompts continued")
    max_new_tokens: int = Field(12, ge=1, le=512, description="tokens generated per prompt")

    def unread(self) -> dict[str, str]:
        if not self.heads:
            return {
                "head_source": "no heads are changed (heads is empty)",
                "positions": "no heads are changed (heads is empty)",
            }
        if self.head_source == "corrupted":
            return {"positions": CORRUPTED_AT_PROMPT}
        return {}


def _check(options: GenerateOptions, model) -> None:
    if problem := heads_problem(options.heads, "heads", model.cfg.n_layers, model.cfg.n_heads):
        raise InputError(problem)


def _head_interventions(options: GenerateOptions, model, pairs, n: int) -> list:
    """`heads` zero-ablated at `positions`, or their z patched from each pair's corrupted prompt at the
    prompt's positions (right padding leaves every prompt's own positions as they are)."""
    from interp.methods.interventions import AblateHeads, Patch
    from interp.model.cache import cache_activations

    heads = [tuple(h) for h in options.heads]
    if not heads:
        return []
    if options.head_source == "zero":
        return [AblateHeads(heads, options.positions)]
    names = sorted({f"blocks.{layer}.attn.hook_z" for layer, _ in heads})
    source = cache_activations(model, pairs.corrupted_tokens[:n].to(model.cfg.device), names)
    return [
        Patch(
            name, source[name], "prompt", heads=[h for la, h in heads if f"blocks.{la}.attn.hook_z" == name]
        )
        for name in names
    ]


def _compute(options: GenerateOptions, model, pairs, ctx: UnitContext) -> Computed:
    import torch

    from interp.methods.generation import generate

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
        options=GenerateOptions,
        dims=fixed("sample"),
        compute=_compute,
        finish=lambda options, mean, clean, corrupted: Finished(
            mean, "1 = the text changed with the intervention", 0.0
        ),
        figures=(),
        check=_check,
    )
)
