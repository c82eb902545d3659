"""Your own prompt pairs: inline (`[[task.pairs]]`) or from a file (`pairs_file = "pairs.jsonl"`).

A pairs file is JSON Lines (one object per line with the keys clean, corrupted, answer, wrong) or CSV
(a header row naming those four columns). Its path is relative to the config file. Errors name the
file and line: a line that is not a JSON object, a key given twice, a missing or empty field, an unknown
column; token problems (different token lengths, an answer that is not one token) name the pair's line
too. The file is read as a file (`read_pairs_file`): exact bytes, regular files only, a size limit.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from interp.base.errors import FileKindError, InputError
from interp.base.files import read_regular
from interp.data.prompts import PromptPair, PromptPairs
from interp.data.tasks.options import TaskConfig
from interp.model.loading import HookedPhi

DESCRIPTION = (
    "your pairs: [[task.pairs]] inline, or pairs_file = a JSONL/CSV file (clean, corrupted, answer, wrong)"
)
FIELDS = ("clean", "corrupted", "answer", "wrong")


class PairsFileError(InputError):
    """A pairs file that cannot be read as pairs; the message names the file, the line and the field."""


MAX_BYTES = 64 * 2**20  # a pairs file larger than this is refused (a million pairs fit in far less)


def read_pairs_file(path: str | Path) -> list[dict[str, str]]:
    """The pairs of a .jsonl or .csv file, each a dict of the four fields (and the line it starts on).

    The file is read as a file: it must be a regular file (not a directory, FIFO or device) of at most
    `MAX_BYTES`, UTF-8 with or without a byte-order mark; the parser sees its exact bytes, so a quoted
    CSV field keeps its newlines (\n or \r\n) and a JSON string keeps U+2028 or U+0085 (JSON Lines
    ends a line at \n only). A JSON object with a key given twice is refused, not resolved.
    """
    path = Path(path)
    if path.suffix.lower() not in (".jsonl", ".csv"):
        raise PairsFileError(
            f"pairs_file {path}: use a .jsonl (JSON Lines) or .csv file, not {path.suffix or 'no extension'}."
        )
    try:
        data = read_regular(path, MAX_BYTES, what="pairs_file")
    except FileNotFoundError:
        raise PairsFileError(
            f"pairs_file {path} does not exist (a relative path is relative to the config file)."
        ) from None
    except FileKindError as error:
        raise PairsFileError(str(error)) from None
    except OSError as error:
        raise PairsFileError(f"pairs_file {path} cannot be read: {error.strerror}.") from None
    try:
        text = data.decode("utf-8-sig")  # no newline translation: the parsers see the file as written
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


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen.add(key)
    return dict(pairs)


def _read_jsonl(path: Path, text: str) -> list[dict[str, str]]:
    rows = []
    for line, content in enumerate(text.split("\n"), start=1):  # JSON Lines: \n ends a line, nothing else
        if not content.strip(" \t\r"):
            continue
        try:
            row = json.loads(content, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as error:
            raise PairsFileError(f"pairs_file {path} line {line}: not valid JSON ({error.msg}).") from None
        except _DuplicateKey as error:
            raise PairsFileError(
                f"pairs_file {path} line {line}: the key {error.args[0]!r} is given twice; give each field once."
            ) from None
        if not isinstance(row, dict):
            raise PairsFileError(
                f"pairs_file {path} line {line}: a pair is a JSON object, not {type(row).__name__}."
            )
        rows.append(_check_row(path, line, row) | {"line": str(line)})
    return rows


def _read_csv(path: Path, text: str) -> list[dict[str, str]]:
    """Rows of a CSV file; a row's line is the line it starts on (a quoted field may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records = []  # (first line, fields)
    last = 0
    try:
        for fields in reader:
            if fields:  # a blank line is no row
                records.append((last + 1, fields))
            last = reader.line_num
    except csv.Error as error:
        raise PairsFileError(f"pairs_file {path} line {reader.line_num}: not valid CSV ({error}).") from None
    header = records[0][1] if records else []
    if sorted(header) != sorted(FIELDS):
        raise PairsFileError(
            f"pairs_file {path} line {records[0][0] if records else 1}: the header must name the columns "
            f"{', '.join(FIELDS)}, not {', '.join(map(repr, header)) or 'nothing'}."
        )
    rows = []
    for line, fields in records[1:]:
        if len(fields) != len(header):
            raise PairsFileError(
                f"pairs_file {path} line {line}: expected {len(FIELDS)} columns, not {len(fields)}."
            )
        rows.append(_check_row(path, line, dict(zip(header, fields, strict=True))) | {"line": str(line)})
    return rows


def build(task: TaskConfig, model: HookedPhi, seed: int) -> PromptPairs:
    """The config's pairs, tokenised and validated (errors name a file's line where pairs came from one)."""
    pairs = [PromptPair(p.clean, p.corrupted, p.answer, p.wrong) for p in task.pairs]
    labels = None
    if task.pairs_file:
        labels = [f"{task.pairs_file} line {p.line}" for p in task.pairs]
    return PromptPairs.from_strings(model.tokenizer, pairs, prepend_bos=task.prepend_bos, labels=labels)
