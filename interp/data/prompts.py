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
from jaxtyping import Float, Int
from torch import Tensor

from interp.base.errors import InterpError
from interp.data.tokens import str_tokens


class PromptError(InterpError, ValueError):
    """A prompt pair that cannot be used as given."""


@dataclass(frozen=True)
class PromptPair:
    """One pair as text: the clean prompt (the model should say `answer`) and the corrupted one (`wrong`)."""

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

    def at_final(self, activation: Float[Tensor, "batch pos ..."]) -> Float[Tensor, "batch ..."]:
        """Each prompt's activation at its own final position (prompts are right-padded)."""
        rows = torch.arange(activation.shape[0], device=activation.device)
        return activation[rows, self.final_pos.to(activation.device)]

    def select(self, index: Int[Tensor, " batch"] | list[int]) -> PromptPairs:
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

    def validate(self, d_vocab: int, n_ctx: int | None = None) -> PromptPairs:
        """Check the invariants every method relies on, however the pairs were built.

        `from_strings` makes valid pairs; pairs built directly from tensors are checked here: one row
        per pair in every tensor, lengths between 1 and the padded width, token ids inside the
        model's vocabulary, and prompts no longer than the model's context (`n_ctx`).
        """
        n, width = self.clean_tokens.shape
        problems = []
        if self.corrupted_tokens.shape != self.clean_tokens.shape:
            problems.append(
                f"clean_tokens {tuple(self.clean_tokens.shape)} and corrupted_tokens "
                f"{tuple(self.corrupted_tokens.shape)} differ in shape"
            )
        for name in ("lengths", "answer", "wrong"):
            if getattr(self, name).shape != (n,):
                problems.append(f"{name} has shape {tuple(getattr(self, name).shape)}, expected ({n},)")
        if problems:
            raise PromptError("Invalid PromptPairs: " + "; ".join(problems) + ".")
        if n == 0:
            raise PromptError(
                "The dataset is empty: give at least one (clean, corrupted, answer, wrong) pair."
            )
        if int(self.lengths.min()) < 1 or int(self.lengths.max()) > width:
            raise PromptError(
                f"Invalid PromptPairs: lengths must be between 1 and the padded width {width}; got "
                f"{int(self.lengths.min())}..{int(self.lengths.max())}."
            )
        for name in ("clean_tokens", "corrupted_tokens", "answer", "wrong"):
            ids = getattr(self, name)
            if int(ids.min()) < 0 or int(ids.max()) >= d_vocab:
                raise PromptError(
                    f"Invalid PromptPairs: {name} holds token ids {int(ids.min())}..{int(ids.max())}, "
                    f"outside the model's vocabulary 0..{d_vocab - 1}."
                )
        if n_ctx is not None and int(self.lengths.max()) > n_ctx:
            raise PromptError(
                f"The longest prompt has {int(self.lengths.max())} tokens, more than the model's context "
                f"of {n_ctx} tokens; positions past it have no trained meaning. Use shorter prompts."
            )
        return self

    def length_groups(self) -> list[Tensor]:
        """Indices of prompts grouped by token length (each group can run unpadded)."""
        return length_groups(self.lengths)

    @classmethod
    def from_strings(
        cls,
        tokenizer,
        pairs: Iterable[PromptPair | Mapping[str, str]],
        *,
        prepend_bos: bool = False,
        pad_id: int | None = None,
        labels: list[str] | None = None,
    ) -> PromptPairs:
        """Tokenise and validate pairs given as `PromptPair`s or dicts with the same four keys.

        Errors name the pair and show its tokens: clean and corrupted prompts of different token
        lengths, answers that are not one token, words outside a word-level vocabulary, no pairs.
        Prompts are right-padded with `pad_id` (default: the tokenizer's pad token, else 0).
        """
        items = [p if isinstance(p, PromptPair) else PromptPair(**p) for p in pairs]
        if not items:
            raise PromptError(
                "The dataset is empty: give at least one (clean, corrupted, answer, wrong) pair."
            )
        bos = [tokenizer.bos_token_id] if prepend_bos else []
        rows_clean, rows_corrupted, answers, wrongs = [], [], [], []
        for index, pair in enumerate(items):
            i = index if labels is None else f"{index} ({labels[index]})"
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
    return "[" + ", ".join(repr(token) for token in str_tokens(tokenizer, ids)) + "]"


def _pad(rows: list[list[int]], pad: int) -> Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


def length_groups(lengths: Int[Tensor, " batch"]) -> list[Tensor]:
    """Indices of prompts grouped by token length, shortest first (each group can run unpadded)."""
    return [torch.nonzero(lengths == n).flatten() for n in torch.unique(lengths)]
