"""Inline prompt pairs from the config's `[[task.pairs]]`."""

from __future__ import annotations

from interp.data.prompts import PromptPair, PromptPairs
from interp.data.tasks.options import TaskConfig
from interp.model.loading import HookedPhi

DESCRIPTION = "inline pairs: [[task.pairs]] clean, corrupted, answer, wrong"


def build(task: TaskConfig, model: HookedPhi, seed: int) -> PromptPairs:
    """The config's inline pairs, tokenised and validated."""
    pairs = [PromptPair(p.clean, p.corrupted, p.answer, p.wrong) for p in task.pairs]
    return PromptPairs.from_strings(model.tokenizer, pairs, prepend_bos=task.prepend_bos)
