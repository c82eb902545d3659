"""Training data for the toy model beyond the task grammars: name sentences and repeated random tokens.

IOI sentences come from `interp.data.tasks.ioi_grammar.sample_ioi`, docstring prompts from
`interp.data.tasks.docstring.sample_pair`.

Both generators are pure functions of a `random.Random`, so a seed fixes the whole data stream.
"""

from __future__ import annotations

import random

from interp.toy.vocab import NAME_SENTENCES, OBJECTS, PLACES, vocabulary


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
