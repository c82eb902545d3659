"""The toy model's own training mixture as a named corpus (`"toy"`) for training dictionaries.

Importing this module registers it (`interp.data.corpus.register_corpus`); `interp train` imports it,
so `[data] corpus = "toy"` works there. Documents are token-id lists: the rows `interp.toy.train`'s
`make_batch` makes (induction, IOI, name sentences, docstrings in the training shares), without their
padding, from a seeded stream, so a seed fixes the corpus and every document is a row the toy was
trained on (use `pack = false`: the toy saw each row from position 0, never rows packed together).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from interp.data.corpus import register_corpus

ROWS_PER_DRAW = 16  # make_batch's mixture repeats every 16 rows


@register_corpus("toy")
def toy_documents(seed: int = 0) -> Iterator[list[int]]:
    """An endless stream of the toy's training rows (token ids, unpadded), fixed by `seed`."""
    from interp.toy.train import make_batch, make_tokenizer

    rng, tokenizer = random.Random(seed), make_tokenizer()
    while True:
        tokens, _ = make_batch(rng, tokenizer, ROWS_PER_DRAW)
        for row in tokens.tolist():
            length = max((i for i, token in enumerate(row) if token != 0), default=-1) + 1
            yield row[:length]  # right-padded with id 0 (end of text), which no row holds inside
