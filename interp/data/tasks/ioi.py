"""Indirect object identification (Wang et al. 2022).

Clean: "When Mary and John went to the store, John gave a drink to" -> " Mary" (the indirect
object); wrong answer " John" (the subject). Corrupted: the second mention of the subject is
replaced by the indirect object ("..., Mary gave a drink to"), which flips which name the model
should say, and keeps the token length.

Templates and names (`interp.data.tasks.ioi_grammar`): on the toy model, the grammar's *held-out*
frames (never trained on) with the grammar's names; on any other model (Phi-2), Wang et al.'s
templates with a list of common first names. Every name, place and object is checked to be a single token under the *loaded* tokenizer,
and the offending ones are listed (Phi-2's tokenizer is GPT-2's BPE plus whitespace tokens, where
all defaults below are single tokens with a leading space).
"""

from __future__ import annotations

import random

from interp.data.prompts import PromptError, PromptPair, PromptPairs, has_unknown
from interp.data.tasks.ioi_grammar import (
    GRAMMAR_NAMES,
    HELD_OUT_TEMPLATES,
    NAMES,
    OBJECTS,
    PLACES,
    TEMPLATES,
    sample_ioi,
)
from interp.data.tasks.options import TaskConfig
from interp.data.tokens import str_tokens
from interp.model.loading import HookedPhi

DESCRIPTION = "indirect object identification; options: n_pairs, names (single tokens)"


def _is_toy(model: HookedPhi) -> bool:
    return getattr(getattr(model, "interp_info", None), "kind", None) == "toy"


def check_single_tokens(tokenizer, words: list[str], what: str) -> None:
    """Every word (with a leading space) must be exactly one known token; list the ones that are not."""
    bad = {}
    for word in words:
        ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or has_unknown(tokenizer, ids):
            bad[word] = str_tokens(tokenizer, ids)
    if bad:
        shown = ", ".join(f"{w!r} -> {t}" for w, t in bad.items())
        raise PromptError(f"These {what} are not single tokens under this model's tokenizer: {shown}")


def build(task: TaskConfig, model: HookedPhi, seed: int) -> PromptPairs:
    """`task.n_pairs` IOI pairs: the toy's held-out frames on the toy, Wang et al.'s templates otherwise."""
    if _is_toy(model):  # measured on frames the toy never trained on
        templates, names = HELD_OUT_TEMPLATES, GRAMMAR_NAMES
    else:
        templates, names = TEMPLATES, NAMES
    names = task.names or names
    if len(set(names)) < 2:
        raise PromptError("the ioi task needs at least two distinct names")
    check_single_tokens(model.tokenizer, names, "names")
    check_single_tokens(model.tokenizer, PLACES + OBJECTS, "places/objects")
    rng = random.Random(seed)
    examples = [sample_ioi(rng, templates, names) for _ in range(task.n_pairs)]
    pairs = [PromptPair(ex.prompt, ex.corrupted, ex.io, ex.s) for ex in examples]
    return PromptPairs.from_strings(model.tokenizer, pairs, prepend_bos=task.prepend_bos)
