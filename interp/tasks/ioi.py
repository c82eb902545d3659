"""Indirect object identification (Wang et al. 2022).

Clean: "When Mary and John went to the store, John gave a drink to" -> " Mary" (the indirect
object); wrong answer " John" (the subject). Corrupted: the second mention of the subject is
replaced by the indirect object ("..., Mary gave a drink to"), which flips which name the model
should say, and keeps the token length.

Templates and names: on the toy model, its *held-out* template frames (never trained on) with its
training names; on any other model (Phi-2), Wang et al.'s templates with a list of common first
names. Every name, place and object is checked to be a single token under the *loaded* tokenizer,
and the offending ones are listed (Phi-2's tokenizer is GPT-2's BPE plus whitespace tokens, where
all defaults below are single tokens with a leading space).
"""

from __future__ import annotations

import random

from interp.config import TaskConfig
from interp.prompts import PromptError, PromptPair, PromptPairs, has_unknown

DESCRIPTION = "indirect object identification; options: n_pairs, names (single tokens)"

TEMPLATES = [
    "Then, {A} and {B} went to the {PLACE}. {B} gave a {OBJ} to",
    "Then, {A} and {B} had a lot of fun at the {PLACE}. {B} gave a {OBJ} to",
    "Then, {A} and {B} were working at the {PLACE}. {B} decided to give a {OBJ} to",
    "Then, {A} and {B} had a long argument, and afterwards {B} said to",
    "After {A} and {B} went to the {PLACE}, {B} gave a {OBJ} to",
    "When {A} and {B} got a {OBJ} at the {PLACE}, {B} decided to give it to",
    "While {A} and {B} were working at the {PLACE}, {B} gave a {OBJ} to",
    "Friends {A} and {B} found a {OBJ} at the {PLACE}. {B} gave it to",
    "The {PLACE} {A} and {B} went to had a {OBJ}. {B} gave it to",
    "When {A} and {B} went to the {PLACE}, {B} gave a {OBJ} to",
]
NAMES = [
    "Mary", "John", "Tom", "James", "Dan", "Martin", "Amy", "Kate", "Lisa", "Paul", "Anna", "Mark",
    "Laura", "Peter", "Rose", "Sam", "Emma", "Jack", "Max", "Jane", "Ben", "Alice", "David", "Sarah",
    "Mike", "Grace", "Luke", "Robert", "William", "Richard", "Thomas", "Charles", "Daniel", "Kevin",
    "George", "Edward", "Ryan", "Jason", "Eric", "Scott", "Frank", "Henry", "Linda", "Jessica", "Karen",
    "Nancy", "Michelle", "Rachel", "Maria", "Julie",
]  # fmt: skip
PLACES = ["store", "garden", "school", "park", "office", "station", "market", "house", "beach", "river"]
OBJECTS = ["drink", "book", "ring", "kiss", "letter", "bone", "basketball", "computer", "snack", "necklace"]


def _is_toy(model) -> bool:
    return getattr(getattr(model, "interp_info", None), "kind", None) == "toy"


def check_single_tokens(tokenizer, words: list[str], what: str) -> None:
    """Every word (with a leading space) must be exactly one known token; list the ones that are not."""
    bad = {}
    for word in words:
        ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or has_unknown(tokenizer, ids):
            bad[word] = [tokenizer.decode([i]) for i in ids]
    if bad:
        shown = ", ".join(f"{w!r} -> {t}" for w, t in bad.items())
        raise PromptError(f"These {what} are not single tokens under this model's tokenizer: {shown}")


def build(task: TaskConfig, model, seed: int) -> PromptPairs:
    if _is_toy(model):
        from interp.toy import vocab

        templates, names = vocab.HELD_OUT_TEMPLATES, vocab.TRAIN_NAMES
        places, objects = vocab.PLACES, vocab.OBJECTS
    else:
        templates, names, places, objects = TEMPLATES, NAMES, PLACES, OBJECTS
    names = task.names or names
    if len(set(names)) < 2:
        raise PromptError("the ioi task needs at least two distinct names")
    check_single_tokens(model.tokenizer, names, "names")
    check_single_tokens(model.tokenizer, places + objects, "places/objects")
    rng = random.Random(seed)
    pairs = []
    for _ in range(task.n_pairs):
        io, s = rng.sample(names, 2)
        template = rng.choice(templates)
        if rng.random() < 0.5:
            template = template.replace("{A} and {B}", "{B} and {A}", 1)
        fill = dict(PLACE=rng.choice(places), OBJ=rng.choice(objects))
        clean = template.format(A=io, B=s, **fill)
        head, tail = template.rsplit("{B}", 1)
        corrupted = (head + "{A}" + tail).format(A=io, B=s, **fill)
        pairs.append(PromptPair(clean, corrupted, " " + io, " " + s))
    return PromptPairs.from_strings(model.tokenizer, pairs, prepend_bos=task.prepend_bos)
