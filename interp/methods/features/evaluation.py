"""Dictionaries evaluated through the model on a task's prompts or on a text corpus.

`evaluate_dictionaries` runs `interp.dictionaries.evaluate_on_model` for each dictionary on the same
tokens: activation metrics (L0, explained variance, cosine, dead and dense latents, the density
histogram) and, through the model, CE loss clean / spliced / zero-ablated, CE loss recovered and KL.
`prompt_tokens` gives a task's clean and corrupted prompts with their padding masked (a corpus is
read by `interp.runner.text_source`, as `interp train` reads it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.data.prompts import PromptPairs
from interp.dictionaries.base import Dictionary
from interp.dictionaries.evaluation import DictionaryMetrics, evaluate_on_model
from interp.model.loading import HookedPhi


def prompt_tokens(pairs: PromptPairs) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
    """The clean then the corrupted prompts (right-padded) and the mask of their real positions."""
    tokens = torch.cat([pairs.clean_tokens, pairs.corrupted_tokens])
    lengths = torch.cat([pairs.lengths, pairs.lengths])
    mask = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]
    return tokens, mask


def evaluate_dictionaries(
    model: HookedPhi,
    dictionaries: Sequence[Dictionary],
    tokens: Int[Tensor, "batch pos"],
    mask: Bool[Tensor, "batch pos"] | None = None,
    *,
    model_batch: int = 16,
    dense_threshold: float = 0.1,
    bins: int = 50,
) -> list[DictionaryMetrics]:
    """Each dictionary's metrics on `tokens` (the positions `mask` keeps), `model_batch` rows per forward."""
    if not dictionaries:
        raise InputError("evaluate_dictionaries needs at least one dictionary.")
    if model_batch < 1:
        raise InputError(f"model_batch={model_batch} must be at least 1.")
    keep = torch.ones_like(tokens, dtype=torch.bool) if mask is None else mask.bool()
    batches = [
        (tokens[i : i + model_batch], keep[i : i + model_batch]) for i in range(0, len(tokens), model_batch)
    ]
    return [
        evaluate_on_model(model, d, batches, dense_threshold=dense_threshold, bins=bins) for d in dictionaries
    ]
