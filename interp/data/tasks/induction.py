"""Induction: a random token sequence repeated; the model should continue the repeat.

Clean: `r + r[:-1]` (answer `r[-1]`). Corrupted: `r' + r[:-1]` with a different random first copy
`r'`, so nothing in the prompt predicts `r[-1]` any more; the wrong answer is `r'[-1]`. Every pair
has the same length (2 * seq_len - 1), so position sweeps work.
"""

from __future__ import annotations

import torch

from interp.data.prompts import PromptPairs
from interp.data.tasks.options import TaskConfig
from interp.data.tokens import real_token_ids
from interp.model.loading import HookedPhi

DESCRIPTION = "repeated random tokens; options: n_pairs, seq_len"


def build(task: TaskConfig, model: HookedPhi, seed: int) -> PromptPairs:
    """`task.n_pairs` repeated random sequences of the tokenizer's ordinary tokens."""
    generator = torch.Generator().manual_seed(seed)
    ids = real_token_ids(model)
    n, k = task.n_pairs, task.seq_len
    first_index = torch.randint(len(ids), (n, k), generator=generator)
    other_index = torch.randint(len(ids), (n, k), generator=generator)
    same = other_index[:, -1] == first_index[:, -1]  # the wrong answer must differ from the answer
    other_index[same, -1] = (other_index[same, -1] + 1) % len(ids)
    first, other = ids[first_index], ids[other_index]
    clean = torch.cat([first, first[:, :-1]], dim=1)
    corrupted = torch.cat([other, first[:, :-1]], dim=1)
    if task.prepend_bos:
        bos = torch.full((n, 1), model.tokenizer.bos_token_id)
        clean, corrupted = torch.cat([bos, clean], 1), torch.cat([bos, corrupted], 1)
    return PromptPairs(clean, corrupted, torch.full((n,), clean.shape[1]), first[:, -1], other[:, -1])
