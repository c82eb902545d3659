"""Clean/corrupted prompt pairs: tokenisation with an explicit BOS policy, validation, padding.

A dataset is a list of pairs `(clean, corrupted, answer, wrong)`: the clean prompt should make the
model say `answer`, the corrupted prompt `wrong` (or at least not `answer`). Patching needs the
two prompts of a pair to have the same number of tokens, so position p means the same thing in
both; answers must be single tokens, read at each prompt's own final position.

Phi's tokenizer prepends no BOS token; `prepend_bos=True` puts the tokenizer's BOS
(`<|endoftext|>` for Phi) in front of every prompt explicitly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from interp.errors import InterpError


class PromptError(InterpError, ValueError):
    """A prompt pair that cannot be used as given."""


@dataclass(frozen=True)
class PromptPair:
    clean: str
    corrupted: str
    answer: str
    wrong: str


@dataclass
class PromptPairs:
    """Tokenised pairs, right-padded to a common width; `lengths` are each prompt's real lengths."""

    clean_tokens: Int[Tensor, "batch pos"]
    corrupted_tokens: Int[Tensor, "batch pos"]
    lengths: Int[Tensor, " batch"]
    answer: Int[Tensor, " batch"]
    wrong: Int[Tensor, " batch"]
    pairs: list[PromptPair] | None = None
    prepend_bos: bool = False

    def __len__(self) -> int:
        return self.clean_tokens.shape[0]

    @property
    def same_length(self) -> bool:
        return bool((self.lengths == self.lengths[0]).all())

    @property
    def final_pos(self) -> Int[Tensor, " batch"]:
        return self.lengths - 1

    def select(self, index: Int[Tensor, " n"] | list[int]) -> PromptPairs:
        """A subset, trimmed to its own longest prompt."""
        index = torch.as_tensor(index, dtype=torch.long)
        width = int(self.lengths[index].max())
        return PromptPairs(
            self.clean_tokens[index, :width],
            self.corrupted_tokens[index, :width],
            self.lengths[index],
            self.answer[index],
            self.wrong[index],
            [self.pairs[i] for i in index.tolist()] if self.pairs else None,
            self.prepend_bos,
        )

    def length_groups(self) -> list[Int[Tensor, " n"]]:
        """Indices of prompts grouped by token length (each group can run unpadded)."""
        return [torch.nonzero(self.lengths == n).flatten() for n in torch.unique(self.lengths)]

    @classmethod
    def from_strings(
        cls,
        tokenizer,
        pairs: Iterable[PromptPair | Mapping[str, str]],
        *,
        prepend_bos: bool = False,
        pad_id: int | None = None,
    ) -> PromptPairs:
        items = [p if isinstance(p, PromptPair) else PromptPair(**p) for p in pairs]
        if not items:
            raise PromptError(
                "The dataset is empty: give at least one (clean, corrupted, answer, wrong) pair."
            )
        bos = [tokenizer.bos_token_id] if prepend_bos else []
        rows_clean, rows_corrupted, answers, wrongs = [], [], [], []
        for i, pair in enumerate(items):
            clean = bos + tokenizer(pair.clean, add_special_tokens=False)["input_ids"]
            corrupted = bos + tokenizer(pair.corrupted, add_special_tokens=False)["input_ids"]
            if len(clean) != len(corrupted):
                raise PromptError(
                    f"Pair {i}: clean and corrupted prompts have different token lengths "
                    f"({len(clean)} vs {len(corrupted)}), so positions would not line up.\n"
                    f"  clean:     {_show(tokenizer, clean)}\n  corrupted: {_show(tokenizer, corrupted)}\n"
                    "Rephrase so that both tokenize to the same length (single-token names are the usual cause)."
                )
            if not clean:
                raise PromptError(f"Pair {i}: the clean prompt is empty.")
            for text, ids in ((pair.clean, clean), (pair.corrupted, corrupted)):
                _check_known(tokenizer, ids, f"Pair {i}: {text!r}")
            answers.append(single_token(tokenizer, pair.answer, f"pair {i} answer"))
            wrongs.append(single_token(tokenizer, pair.wrong, f"pair {i} wrong answer"))
            rows_clean.append(clean)
            rows_corrupted.append(corrupted)
        pad = pad_id if pad_id is not None else (tokenizer.pad_token_id or 0)
        return cls(
            _pad(rows_clean, pad),
            _pad(rows_corrupted, pad),
            torch.tensor([len(r) for r in rows_clean]),
            torch.tensor(answers),
            torch.tensor(wrongs),
            items,
            prepend_bos,
        )


def has_unknown(tokenizer, ids: list[int]) -> bool:
    """Whether `ids` contain the tokenizer's unknown token (only word-level vocabularies have one)."""
    unk = tokenizer.unk_token_id
    if unk in (None, tokenizer.bos_token_id, tokenizer.eos_token_id):
        return False  # byte-level BPE (Phi-2) has no unknown words; its "unk" is <|endoftext|>
    return unk in ids


def _check_known(tokenizer, ids: list[int], what: str) -> None:
    """Refuse text the tokenizer could only map to its unknown token (a word-level vocabulary)."""
    if has_unknown(tokenizer, ids):
        raise PromptError(
            f"{what} contains words outside the tokenizer's vocabulary (they become {tokenizer.unk_token!r}): "
            f"{_show(tokenizer, ids)}"
        )


def single_token(tokenizer, text: str, what: str = "answer") -> int:
    """The id of `text` if it is exactly one token; otherwise an error showing its tokens."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    _check_known(tokenizer, ids, f"The {what} {text!r}")
    if len(ids) != 1:
        hint = (
            " (did you forget the leading space, e.g. ' Mary'?)" if text and not text.startswith(" ") else ""
        )
        raise PromptError(
            f"The {what} {text!r} is {len(ids)} tokens, {_show(tokenizer, ids)}; answers must be a single token{hint}."
        )
    return ids[0]


def _show(tokenizer, ids: list[int]) -> str:
    return "[" + ", ".join(repr(tokenizer.decode([i])) for i in ids) + "]"


def _pad(rows: list[list[int]], pad: int) -> Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out
