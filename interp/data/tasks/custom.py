"""Your own prompt pairs: inline (`[[task.pairs]]`) or from a file (`pairs_file = "pairs.jsonl"`).

A pairs file is JSON Lines (one object per line with the keys clean, corrupted, answer, wrong) or CSV
(a header row naming those four columns). Its path is relative to the config file. Errors name the
file and line: a line that is not a JSON object, a missing or empty field, an unknown column; token
problems (different token lengths, an answer that is not one token) name the pair's line too.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from interp.base.errors import InputError
from interp.data.prompts import PromptPair, PromptPairs
from interp.data.tasks.options import TaskConfig
from interp.model.loading import HookedPhi

DESCRIPTION = (
    "your pairs: [[task.pairs]] inline, or pairs_file = a JSONL/CSV file (clean, corrupted, answer, wrong)"
)
FIELDS = ("clean", "corrupted", "answer", "wrong")


class PairsFileError(InputError):
    """A pairs file that cannot be read as pairs; the message names the file, the line and the field."""


def read_pairs_file(path: str | Path) -> list[dict[str, str]]:
    """The pairs of a .jsonl or .csv file, each a dict of the four fields."""
    path = Path(path)
    if path.suffix.lower() not in (".jsonl", ".csv"):
        raise PairsFileError(
            f"pairs_file {path}: use a .jsonl (JSON Lines) or .csv file, not {path.suffix or 'no extension'}."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PairsFileError(
            f"pairs_file {path} does not exist (a relative path is relative to the config file)."
        ) from None
    except UnicodeDecodeError as error:
        raise PairsFileError(f"pairs_file {path} is not UTF-8 text (byte {error.start}).") from None
    rows = _read_jsonl(path, text) if path.suffix.lower() == ".jsonl" else _read_csv(path, text)
    if not rows:
        raise PairsFileError(f"pairs_file {path} holds no pairs.")
    return rows


def _check_row(path: Path, line: int, row: dict) -> dict[str, str]:
    missing = [f for f in FIELDS if f not in row]
    if missing:
        raise PairsFileError(
            f"pairs_file {path} line {line}: missing {', '.join(missing)} (each pair needs {', '.join(FIELDS)})."
        )
    extra = sorted(set(row) - set(FIELDS))
    if extra:
        raise PairsFileError(
            f"pairs_file {path} line {line}: unknown field {', '.join(map(repr, extra))} (allowed: {', '.join(FIELDS)})."
        )
    for field in FIELDS:
        if not isinstance(row[field], str) or not row[field]:
            raise PairsFileError(
                f"pairs_file {path} line {line}: {field} must be a non-empty string, not {row[field]!r}."
            )
    return {f: row[f] for f in FIELDS}


def _read_jsonl(path: Path, text: str) -> list[dict[str, str]]:
    rows = []
    for line, content in enumerate(text.splitlines(), start=1):
        if not content.strip():
            continue
        try:
            row = json.loads(content)
        except json.JSONDecodeError as error:
            raise PairsFileError(f"pairs_file {path} line {line}: not valid JSON ({error.msg}).") from None
        if not isinstance(row, dict):
            raise PairsFileError(
                f"pairs_file {path} line {line}: a pair is a JSON object, not {type(row).__name__}."
            )
        rows.append(_check_row(path, line, row) | {"line": str(line)})
    return rows


def _read_csv(path: Path, text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    if sorted(header) != sorted(FIELDS):
        raise PairsFileError(
            f"pairs_file {path} line 1: the header must name the columns {', '.join(FIELDS)}, not {', '.join(header) or 'nothing'}."
        )
    rows = []
    for row in reader:
        if None in row or any(v is None for v in row.values()):
            raise PairsFileError(f"pairs_file {path} line {reader.line_num}: expected {len(FIELDS)} columns.")
        rows.append(_check_row(path, reader.line_num, row) | {"line": str(reader.line_num)})
    return rows


def build(task: TaskConfig, model: HookedPhi, seed: int) -> PromptPairs:
    """The config's pairs, tokenised and validated (errors name a file's line where pairs came from one)."""
    pairs = [PromptPair(p.clean, p.corrupted, p.answer, p.wrong) for p in task.pairs]
    labels = None
    if task.pairs_file:
        labels = [f"{task.pairs_file} line {p.line}" for p in task.pairs]
    return PromptPairs.from_strings(model.tokenizer, pairs, prepend_bos=task.prepend_bos, labels=labels)
