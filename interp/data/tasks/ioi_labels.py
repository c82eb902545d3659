"""IOI prompts with their variables as labels, for probes and DAS (`interp.methods.representations`).

`ioi_labels` samples IOI sentences over a few names, keeps those of one token length (DAS reads
one position of equal-length prompts), and returns each sentence's indirect object and subject as
indices into the names, the sentences with the roles swapped (the `ioi` task's corrupted prompts:
the second mention of the subject becomes the indirect object, so the answer becomes the subject),
and the names' token ids. With `gives` ending "a {OBJ} to" (the default) the second mention of the
subject sits at position -5 in every prompt: S2, then " gave a drink to".
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from interp.data.prompts import PromptError
from interp.data.tasks.ioi import _is_toy, check_single_tokens
from interp.data.tasks.ioi_grammar import GRAMMAR_NAMES, HELD_OUT_TEMPLATES, TEMPLATES, sample_ioi
from interp.model.loading import HookedPhi

S2_POSITION = -5  # with templates ending in "{B} <verb> a {OBJ} to"


@dataclass(frozen=True)
class IOILabels:
    """Equal-length IOI prompts and their variables; `io[i]`, `s[i]` index `names` / `answers`."""

    prompts: list[str]
    swapped: list[str]  # the same sentences with the second subject mention replaced by the IO
    io: Int[Tensor, " batch"]
    s: Int[Tensor, " batch"]
    names: tuple[str, ...]
    answers: tuple[int, ...]  # token id of " <name>" for each name
    n_tokens: int


def ioi_labels(
    model: HookedPhi,
    n: int = 480,
    names: Sequence[str] = tuple(GRAMMAR_NAMES[:8]),
    seed: int = 0,
    ending: str = "a {OBJ} to",
) -> IOILabels:
    """`n` IOI prompts over `names`, all of the most common token length among templates ending with
    `ending` (the toy's held-out frames on the toy, Wang et al.'s templates elsewhere)."""
    names = tuple(names)
    if len(set(names)) < 2:
        raise PromptError(f"names={list(names)}: use at least two distinct names.")
    check_single_tokens(model.tokenizer, list(names), "names")
    templates = [t for t in (HELD_OUT_TEMPLATES if _is_toy(model) else TEMPLATES) if t.endswith(ending)]
    if not templates:
        raise PromptError(f"no IOI template ends with {ending!r}.")
    rng = random.Random(seed)
    examples = [sample_ioi(rng, templates, list(names)) for _ in range(4 * n)]
    lengths = [len(model.tokenizer(e.prompt, add_special_tokens=False)["input_ids"]) for e in examples]
    length = Counter(lengths).most_common(1)[0][0]
    kept = [e for e, k in zip(examples, lengths, strict=True) if k == length][:n]
    if len(kept) < n:
        raise PromptError(
            f"only {len(kept)} of the sampled prompts have {length} tokens; ask for fewer than {n}."
        )
    return IOILabels(
        prompts=[e.prompt for e in kept],
        swapped=[e.corrupted for e in kept],
        io=torch.tensor([names.index(e.io.strip()) for e in kept]),
        s=torch.tensor([names.index(e.s.strip()) for e in kept]),
        names=names,
        answers=tuple(
            model.tokenizer(" " + name, add_special_tokens=False)["input_ids"][0] for name in names
        ),
        n_tokens=length,
    )
