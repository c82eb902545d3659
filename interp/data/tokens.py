"""Token helpers every layer above uses: readable token strings and the ids of real tokens."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from jaxtyping import Int
from torch import Tensor

from interp.model.loading import HookedPhi


def str_tokens(tokenizer, ids: Iterable[int] | Tensor) -> list[str]:
    """Each token id decoded on its own (so `[' Mary', ' and']`, not the joined text)."""
    if isinstance(ids, Tensor):
        ids = ids.flatten().tolist()
    return [tokenizer.decode([int(i)]) for i in ids]


def real_token_ids(model: HookedPhi) -> Int[Tensor, " n_tokens"]:
    """Ids of the tokenizer's ordinary tokens: no special tokens, none of the padded vocab rows.

    Phi-2 pads its 51200-row embedding beyond the tokenizer's ~50295 real tokens; those extra ids
    belong to no token and are left out, as are special tokens such as `<|endoftext|>`.
    """
    tokenizer = model.tokenizer
    n_real = min(len(tokenizer), model.cfg.d_vocab)
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
    ids = torch.arange(n_real)
    return ids[~torch.isin(ids, special)]
