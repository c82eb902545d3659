"""Files of records with named fields, as users write them: JSON Lines or CSV.

A records file is JSON Lines (one object per line holding exactly the fields) or CSV (a header row
naming the fields, one row per record). Errors name the file, the line and the field: a line that is
not a JSON object, a key given twice, a missing, unknown or empty field. The file is read as a file:
a regular file (not a directory, FIFO or device) of at most `max_bytes`, UTF-8 with or without a
byte-order mark, the parsers seeing its exact bytes (a quoted CSV field keeps its newlines, a JSON
string keeps U+2028; JSON Lines ends a line at \\n only). Task pairs (`pairs_file`) and probe labels
(`labels_file`) are such files.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from interp.base.errors import FileKindError, InputError
from interp.base.files import read_regular


class RecordsFileError(InputError):
    """A records file that cannot be read; the message names the file, the line and the field."""


@dataclass(frozen=True)
class RecordsFormat:
    """What a records file holds: its `fields`, what the file option is called (`what`, for
    messages), what one record is (`item`), and fields that may also be JSON integers."""

    fields: tuple[str, ...]
    what: str
    item: str
    integer_fields: tuple[str, ...] = ()
    max_bytes: int = 64 * 2**20


def read_records(
    path: str | Path, form: RecordsFormat, error: type[RecordsFileError] = RecordsFileError
) -> list[dict[str, str]]:
    """The records of a .jsonl or .csv file, each a dict of `form.fields` (values as strings; JSON
    integers in `form.integer_fields` written in decimal) and `line`, the line it starts on."""
    path = Path(path)
    if path.suffix.lower() not in (".jsonl", ".csv"):
        raise error(
            f"{form.what} {path}: use a .jsonl (JSON Lines) or .csv file, not {path.suffix or 'no extension'}."
        )
    try:
        data = read_regular(path, form.max_bytes, what=form.what)
    except FileNotFoundError:
        raise error(
            f"{form.what} {path} does not exist (a relative path is relative to the config file)."
        ) from None
    except FileKindError as problem:
        raise error(str(problem)) from None
    except OSError as problem:
        raise error(f"{form.what} {path} cannot be read: {problem.strerror}.") from None
    try:
        text = data.decode("utf-8-sig")  # no newline translation: the parsers see the file as written
    except UnicodeDecodeError as problem:
        raise error(f"{form.what} {path} is not UTF-8 text (byte {problem.start}).") from None
    reader = _read_jsonl if path.suffix.lower() == ".jsonl" else _read_csv
    rows = reader(path, text, form, error)
    if not rows:
        raise error(f"{form.what} {path} holds no {form.item}s.")
    return rows


def _check_row(path: Path, line: int, row: dict, form: RecordsFormat, error) -> dict[str, str]:
    fields = form.fields
    missing = [f for f in fields if f not in row]
    if missing:
        raise error(
            f"{form.what} {path} line {line}: missing {', '.join(missing)} (each {form.item} needs "
            f"{', '.join(fields)})."
        )
    extra = sorted(set(row) - set(fields))
    if extra:
        raise error(
            f"{form.what} {path} line {line}: unknown field {', '.join(map(repr, extra))} (allowed: "
            f"{', '.join(fields)})."
        )
    out = {}
    for field in fields:
        value = row[field]
        if field in form.integer_fields and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value:
            kind = (
                "a non-empty string or an integer" if field in form.integer_fields else "a non-empty string"
            )
            raise error(f"{form.what} {path} line {line}: {field} must be {kind}, not {row[field]!r}.")
        out[field] = value
    return out


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen.add(key)
    return dict(pairs)


def _read_jsonl(path: Path, text: str, form: RecordsFormat, error) -> list[dict[str, str]]:
    rows = []
    for line, content in enumerate(text.split("\n"), start=1):  # JSON Lines: \n ends a line, nothing else
        if not content.strip(" \t\r"):
            continue
        try:
            row = json.loads(content, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as problem:
            raise error(f"{form.what} {path} line {line}: not valid JSON ({problem.msg}).") from None
        except _DuplicateKey as problem:
            raise error(
                f"{form.what} {path} line {line}: the key {problem.args[0]!r} is given twice; give each field once."
            ) from None
        if not isinstance(row, dict):
            raise error(
                f"{form.what} {path} line {line}: a {form.item} is a JSON object, not {type(row).__name__}."
            )
        rows.append(_check_row(path, line, row, form, error) | {"line": str(line)})
    return rows


def _read_csv(path: Path, text: str, form: RecordsFormat, error) -> list[dict[str, str]]:
    """Rows of a CSV file; a row's line is the line it starts on (a quoted field may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records = []  # (first line, fields)
    last = 0
    try:
        for fields in reader:
            if fields:  # a blank line is no row
                records.append((last + 1, fields))
            last = reader.line_num
    except csv.Error as problem:
        raise error(f"{form.what} {path} line {reader.line_num}: not valid CSV ({problem}).") from None
    header = records[0][1] if records else []
    if sorted(header) != sorted(form.fields):
        raise error(
            f"{form.what} {path} line {records[0][0] if records else 1}: the header must name the columns "
            f"{', '.join(form.fields)}, not {', '.join(map(repr, header)) or 'nothing'}."
        )
    rows = []
    for line, fields in records[1:]:
        if len(fields) != len(header):
            raise error(
                f"{form.what} {path} line {line}: expected {len(form.fields)} columns, not {len(fields)}."
            )
        row = dict(zip(header, fields, strict=True))
        rows.append(_check_row(path, line, row, form, error) | {"line": str(line)})
    return rows
