"""Your own prompt pairs: inline (`[[task.pairs]]`) or from a file (`pairs_file = "pairs.jsonl"`).

A pairs file is JSON Lines (one object per line with the keys clean, corrupted, answer, wrong) or CSV
(a header row naming those four columns). Its path is relative to the config file. Errors name the
file and line: a line that is not a JSON object, a key given twice, a missing or empty field, an unknown
column; token problems (different token lengths, an answer that is not one token) name the pair's line
too. The file is read as a file (`read_pairs_file`): exact bytes, regular files only, a size limit.
"""

from __future__ import annotations

from pathlib import Path

from interp.data.prompts import PromptPair, PromptPairs
from interp.data.records import RecordsFileError, RecordsFormat, read_records
from interp.data.tasks.options import TaskConfig
from interp.model.loading import HookedPhi

DESCRIPTION = (
    "your pairs: [[task.pairs]] inline, or pairs_file = a JSONL/CSV file (clean, corrupted, answer, wrong)"
)
FIELDS = ("clean", "corrupted", "answer", "wrong")


class PairsFileError(RecordsFileError):
    """A pairs file that cannot be read as pairs; the message names the file, the line and the field."""


MAX_BYTES = 64 * 2**20  # a pairs file larger than this is refused (a million pairs fit in far less)


def read_pairs_file(path: str | Path) -> list[dict[str, str]]:
    """The pairs of a .jsonl or .csv file, each a dict of the four fields (and the line it starts on),
    read as `interp.data.records` reads a records file (a regular file, exact bytes, a size limit, a
    JSON key given twice refused)."""
    form = RecordsFormat(FIELDS, what="pairs_file", item="pair", max_bytes=MAX_BYTES)
    return read_records(path, form, PairsFileError)


def build(task: TaskConfig, model: HookedPhi, seed: int) -> PromptPairs:
    """The config's pairs, tokenised and validated (errors name a file's line where pairs came from one)."""
    pairs = [PromptPair(p.clean, p.corrupted, p.answer, p.wrong) for p in task.pairs]
    labels = None
    if task.pairs_file:
        labels = [f"{task.pairs_file} line {p.line}" for p in task.pairs]
    return PromptPairs.from_strings(model.tokenizer, pairs, prepend_bos=task.prepend_bos, labels=labels)
