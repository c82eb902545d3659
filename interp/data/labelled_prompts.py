"""Prompts with a class label each, for probes (`interp.methods.representations`): from a task's pairs
or from a labels file.

From pairs (`from_pairs`):
- `"answer"`: each pair's clean prompt, labelled by its answer token (IOI: which name is the indirect
  object; docstring: which argument comes next);
- `"clean_or_corrupted"`: every clean and every corrupted prompt, labelled by which of the two it is
  (is the corruption linearly readable?).

From a file (`read_labels_file`): JSON Lines `{"prompt": "...", "label": "..."}` (a label may be a JSON
integer) or CSV with the columns prompt, label, read as `interp.data.records` reads a records file.
Classes are numbered in sorted order (numerically when every label is an integer), so the same
file always gives the same class indices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Int
from torch import Tensor

from interp.base.errors import InputError
from interp.data.prompts import PromptPairs, has_unknown
from interp.data.records import RecordsFileError, RecordsFormat, read_records

PairLabels = Literal["answer", "clean_or_corrupted"]
FIELDS = ("prompt", "label")
MAX_BYTES = 64 * 2**20


class LabelsFileError(RecordsFileError):
    """A labels file that cannot be read; the message names the file, the line and the field."""


@dataclass(frozen=True)
class LabelledPrompts:
    """Prompts (strings, or token ids one row per prompt) and each one's class, indexing `classes`."""

    prompts: list[str] | list[Int[Tensor, " _pos"]]
    labels: Int[Tensor, " batch"]
    classes: tuple[str, ...]
    source: str  # where the labels came from, for results and reports
    groups: Int[Tensor, " batch"] | None = None  # prompts a held-out split keeps together (a pair's two)
    lines: tuple[str, ...] | None = None  # where each prompt came from (a labels file's lines)

    def __len__(self) -> int:
        return len(self.labels)


def _numbered(names: list[str]) -> tuple[tuple[str, ...], Tensor]:
    """The distinct names in sorted order (numeric if all are integers) and each name's index."""
    distinct = set(names)
    if all(re.fullmatch(r"-?[0-9]+", n) for n in distinct):
        classes = tuple(sorted(distinct, key=lambda n: (int(n), n)))  # "01" and "1": both kept, in one order
    else:
        classes = tuple(sorted(distinct))
    index = {c: i for i, c in enumerate(classes)}
    return classes, torch.tensor([index[n] for n in names], dtype=torch.long)


def from_pairs(pairs: PromptPairs, tokenizer, labels: PairLabels) -> LabelledPrompts:
    """The pairs' prompts labelled as `labels` says (see the module docstring), as token ids."""
    rows = range(len(pairs))

    def prompt(tokens: Tensor, i: int) -> Tensor:
        return tokens[i, : int(pairs.lengths[i])]

    if labels == "answer":
        names = [tokenizer.decode([int(pairs.answer[i])]) for i in rows]
        classes, index = _numbered(names)
        return LabelledPrompts(
            [prompt(pairs.clean_tokens, i) for i in rows],
            index,
            classes,
            "the clean prompts' answers",
            torch.arange(len(pairs)),
        )
    if labels == "clean_or_corrupted":
        prompts = [prompt(pairs.clean_tokens, i) for i in rows] + [
            prompt(pairs.corrupted_tokens, i) for i in rows
        ]
        index = torch.tensor([1] * len(pairs) + [0] * len(pairs))
        groups = torch.arange(len(pairs)).repeat(2)  # a pair's clean and corrupted prompts stay together
        return LabelledPrompts(
            prompts, index, ("corrupted", "clean"), "clean (1) or corrupted (0) prompt", groups
        )
    raise InputError(f"labels={labels!r} is not allowed; use 'answer' or 'clean_or_corrupted'.")


def read_labels_file(path: str | Path) -> LabelledPrompts:
    """The labelled prompts of a .jsonl or .csv file (fields prompt, label)."""
    form = RecordsFormat(
        FIELDS, what="labels_file", item="labelled prompt", integer_fields=("label",), max_bytes=MAX_BYTES
    )
    rows = read_records(path, form, LabelsFileError)
    classes, index = _numbered([r["label"] for r in rows])
    if len(classes) < 2:
        raise LabelsFileError(
            f"labels_file {path}: every prompt has the label {classes[0]!r}; a probe needs two or more classes."
        )
    lines = tuple(f"labels_file {path} line {r['line']}" for r in rows)
    return LabelledPrompts(
        [r["prompt"] for r in rows], index, classes, f"labels_file {Path(path).name}", None, lines
    )


def tokenized(data: LabelledPrompts, tokenizer, prepend_bos: bool, n_ctx: int | None) -> LabelledPrompts:
    """`data` with its string prompts as token ids, as the task's pairs are tokenised (the tokenizer's
    BOS first with `prepend_bos`); a prompt with words the tokenizer does not know, or longer than the
    model's context, is refused naming where it came from."""
    if not data.prompts or not isinstance(data.prompts[0], str):
        return data
    bos = [tokenizer.bos_token_id] if prepend_bos else []
    rows = []
    for i, prompt in enumerate(data.prompts):
        ids = bos + tokenizer(prompt, add_special_tokens=False)["input_ids"]
        where = data.lines[i] if data.lines else f"prompt {i}"
        if len(ids) == 0:
            raise InputError(f"{where}: the prompt is empty; every prompt needs at least one token.")
        if has_unknown(tokenizer, ids):
            raise InputError(
                f"{where}: the prompt {prompt[:60]!r} has words outside the tokenizer's vocabulary (they would "
                f"become {tokenizer.unk_token!r})."
            )
        if n_ctx is not None and len(ids) > n_ctx:
            raise InputError(
                f"{where}: the prompt is {len(ids)} tokens, more than the model's context ({n_ctx})."
            )
        rows.append(torch.tensor(ids, dtype=torch.long))
    return replace(data, prompts=rows)
