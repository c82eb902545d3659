"""Dictionaries evaluated through the model on a task's prompts or on a text corpus.

`evaluate_dictionaries` runs `interp.dictionaries.evaluate_on_model` for each dictionary on the same
tokens: activation metrics (L0, explained variance, cosine, dead and dense latents, the density
histogram) and, through the model, CE loss clean / spliced / zero-ablated, CE loss recovered and KL.
`prompt_tokens` gives a task's clean and corrupted prompts with their padding masked; `corpus_tokens`
cuts a UTF-8 text file, tokenised without a BOS, into rows of `context` tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.base.files import read_regular
from interp.data.prompts import PromptPairs
from interp.dictionaries.base import Dictionary
from interp.dictionaries.evaluation import DictionaryMetrics, evaluate_on_model
from interp.model.loading import HookedPhi

MAX_CORPUS_BYTES = 256 * 1024**2


def prompt_tokens(pairs: PromptPairs) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
    """The clean then the corrupted prompts (right-padded) and the mask of their real positions."""
    tokens = torch.cat([pairs.clean_tokens, pairs.corrupted_tokens])
    lengths = torch.cat([pairs.lengths, pairs.lengths])
    mask = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]
    return tokens, mask


def corpus_tokens(tokenizer, path: str | Path, context: int, max_tokens: int) -> Int[Tensor, "batch pos"]:
    """The text file at `path`, tokenised (no BOS), as rows of `context` tokens, at most `max_tokens` in all."""
    if context < 2 or max_tokens < context:
        raise InputError(f"context={context} must be >= 2 and max_tokens={max_tokens} at least one context.")
    data = read_regular(path, MAX_CORPUS_BYTES, what="corpus_file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"corpus_file {path} is not UTF-8 text (byte {error.start}).") from None
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    rows = min(len(ids), max_tokens) // context
    if rows == 0:
        raise InputError(f"corpus_file {path} has {len(ids)} tokens, fewer than one context of {context}.")
    return torch.tensor(ids[: rows * context]).reshape(rows, context)


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
