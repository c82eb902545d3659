"""Training and evaluation data for the toy model: IOI sentences and repeated random tokens.

Both generators are pure functions of a `random.Random`, so a seed fixes the whole data stream.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from interp.toy.vocab import NAME_SENTENCES, OBJECTS, PLACES, vocabulary


@dataclass(frozen=True)
class IOIExample:
    """One IOI prompt: `prompt` ends just before the answer; `io` is the answer, `s` the subject."""

    prompt: str
    io: str
    s: str
    template: str


def make_ioi(rng: random.Random, templates: list[str], names: list[str]) -> IOIExample:
    """Fill a template with two distinct names, in ABB or BAB order at random."""
    io, s = rng.sample(names, 2)
    template = rng.choice(templates)
    if rng.random() < 0.5:  # BABA order: the subject is mentioned first
        template = template.replace("{A} and {B}", "{B} and {A}", 1)
    prompt = template.format(A=io, B=s, PLACE=rng.choice(PLACES), OBJ=rng.choice(OBJECTS))
    return IOIExample(prompt=prompt, io=" " + io, s=" " + s, template=template)


def make_name_sentence(rng: random.Random, names: list[str]) -> str:
    """A sentence with names but no IOI ending: teaches that a token is a name."""
    first, second = rng.sample(names, 2)
    sentence = rng.choice(NAME_SENTENCES)
    return sentence.format(N=first, M=second, PLACE=rng.choice(PLACES), OBJ=rng.choice(OBJECTS))


def real_token_ids() -> list[int]:
    """Ids of the tokens that are words (every id but the special tokens and the padding)."""
    return list(range(2, len(vocabulary())))


def make_repeated_tokens(
    rng: random.Random, min_len: int = 6, max_len: int = 16, max_prefix: int = 6
) -> tuple[list[int], int]:
    """A random prefix, then a random sequence twice; returns (ids, index where the repeat starts)."""
    ids = real_token_ids()
    prefix = [rng.choice(ids) for _ in range(rng.randint(0, max_prefix))]
    seq = [rng.choice(ids) for _ in range(rng.randint(min_len, max_len))]
    return prefix + seq + seq, len(prefix) + len(seq)
