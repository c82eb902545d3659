from __future__ import annotations

import random

import pytest
import torch


def toy_corpus(n_batches: int, rows: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(tokens, mask) batches of the toy's own training mixture; the mask keeps real (unpadded) positions."""
    from interp.toy.train import make_batch, make_tokenizer

    rng, tokenizer = random.Random(seed), make_tokenizer()
    batches = []
    for _ in range(n_batches):
        tokens, _ = make_batch(rng, tokenizer, rows)
        positions = torch.arange(tokens.shape[1])
        last = torch.where(tokens != 0, positions, -1).max(dim=1).values  # right-padded with id 0
        batches.append((tokens, positions[None, :] <= last[:, None]))
    return batches


@pytest.fixture(scope="session")
def toy_batches():
    return toy_corpus(12)
