"""Text corpora for training dictionaries: documents from files, a Hugging Face dataset or a named
corpus, tokenised into fixed-length rows, in a deterministic order that a resumed run can skip into.

Where documents come from (each an iterator of `str`, or of token-id lists for a named corpus):

- `file_documents(paths)`: local files, read as files (`interp.base.files.read_regular`: regular
  files only, a size limit) one at a time, in the order given (a directory: its `.txt`, `.jsonl`
  and `.parquet` files, sorted by path, recursively). `.txt`: one document per line, per
  blank-line-separated paragraph or per file (`sample_by`, as Hugging Face's `text` builder);
  `.jsonl`: one JSON object per line, its `text_field`; `.parquet`: the `text_field` column.
- `dataset_documents(name)`: a Hugging Face dataset streamed with `datasets.load_dataset(...,
  streaming=True)`: a hub name, a local dataset directory, or a builder such as `"json"` /
  `"parquet"` with `data_files`; the `text_field` of every row, in the dataset's order.
- `corpus_documents(name, seed)`: a corpus registered by name (`register_corpus`); the toy model
  registers its own training mixture as `"toy"` (`interp.toy.corpus`). `PROVIDERS` names the module
  that registers each built-in corpus, imported on first use (as `interp.data.tasks` imports a task's
  module), so `"toy"` works in any process: the CLI, a notebook, a Ray worker.

Empty documents are skipped. `TokenRows` turns documents into rows of `context_length` tokens:
packed (documents concatenated, each followed by the tokenizer's end-of-text token, cut into
consecutive rows; the last partial row is dropped) or one row per document (its first
`context_length` tokens). Its `state()` (documents consumed, tokens carried into the next row) is
what a checkpoint stores; `TokenRows(..., state=...)` skips those documents and carries on with
exactly the rows an uninterrupted stream would have produced next.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import import_module
from pathlib import Path

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from interp.base.errors import FileKindError, InputError

SUFFIXES = (".txt", ".jsonl", ".parquet")
MAX_FILE_BYTES = 4 * 2**30  # one data file is read into memory at a time; larger ones are refused

Document = str | list[int]
_CORPORA: dict[str, Callable[[int], Iterator[Document]]] = {}
# built-in corpora: the module whose import registers each (imported when the name is first asked for)
PROVIDERS = {"toy": "interp.toy.corpus"}


class CorpusError(InputError):
    """A data source that cannot be read as documents; the message names the file, line or field."""


# --- named corpora -------------------------------------------------------------------------------
def register_corpus(name: str) -> Callable:
    """Decorator: make `factory(seed) -> Iterator[str | list[int]]` known as corpus `name`."""

    def register(factory: Callable[[int], Iterator[Document]]) -> Callable[[int], Iterator[Document]]:
        if name in _CORPORA and _CORPORA[name] is not factory:
            raise ValueError(f"corpus {name!r} is already registered")
        _CORPORA[name] = factory
        return factory

    return register


def corpora() -> list[str]:
    """The corpus names known: registered ones and the built-in ones (`PROVIDERS`)."""
    return sorted(set(_CORPORA) | set(PROVIDERS))


def corpus_documents(name: str, seed: int = 0) -> Iterator[Document]:
    """The documents of a registered (or built-in) corpus, from `seed`."""
    if name not in _CORPORA and name in PROVIDERS:
        import_module(PROVIDERS[name])  # registers it
    if name not in _CORPORA:
        raise CorpusError(
            f"corpus {name!r} is not registered; known corpora: {', '.join(corpora())} (register your own "
            "with interp.data.corpus.register_corpus, or read files with files = [...])."
        )
    return _CORPORA[name](seed)


# --- files -------------------------------------------------------------------------------------
def data_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files `paths` name, in order: a file as it is, a directory as its data files (sorted)."""
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
            if not found:
                raise CorpusError(f"data directory {path} holds no {', '.join(SUFFIXES)} files.")
            out += found
        elif path.suffix.lower() in SUFFIXES:
            if not path.exists():
                raise CorpusError(
                    f"data file {path} does not exist (a relative path is relative to the config file)."
                )
            out.append(path)
        else:
            raise CorpusError(
                f"data file {path}: use {', '.join(SUFFIXES)} files or a directory of them, "
                f"not {path.suffix or 'a file without extension'}."
            )
    if not out:
        raise CorpusError("no data files given.")
    return out


def _read(path: Path) -> bytes:
    from interp.base.files import read_regular

    try:
        return read_regular(path, MAX_FILE_BYTES, what="data file")
    except FileNotFoundError:
        raise CorpusError(f"data file {path} does not exist.") from None
    except FileKindError as error:
        raise CorpusError(str(error)) from None
    except OSError as error:
        raise CorpusError(f"data file {path} cannot be read: {error.strerror}.") from None


def _text(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CorpusError(f"data file {path} is not UTF-8 text (byte {error.start}).") from None


def _txt_documents(path: Path, text: str, sample_by: str) -> list[str]:
    if sample_by == "document":
        return [text]
    if sample_by == "line":
        return text.splitlines()
    paragraphs, current = [], []
    for line in text.splitlines():
        if line.strip():
            current.append(line)
        elif current:
            paragraphs.append("\n".join(current))
            current = []
    return paragraphs + (["\n".join(current)] if current else [])


def _field(where: str, row: object, text_field: str) -> str:
    if not isinstance(row, dict):
        raise CorpusError(f"{where}: a row must be a JSON object with a {text_field!r} field.")
    if text_field not in row:
        raise CorpusError(
            f"{where}: no field {text_field!r} (fields: {', '.join(map(repr, row)) or 'none'}); "
            "set text_field to the field holding the text."
        )
    value = row[text_field]
    if not isinstance(value, str):
        raise CorpusError(f"{where}: field {text_field!r} is {type(value).__name__}, not text.")
    return value


def _jsonl_documents(path: Path, text: str, text_field: str) -> Iterator[str]:
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise CorpusError(f"data file {path} line {number} is not JSON: {error.msg}.") from None
        yield _field(f"data file {path} line {number}", row, text_field)


def _parquet_documents(path: Path, data: bytes, text_field: str) -> list[str]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as error:  # pyarrow raises its own error types for damaged files
        raise CorpusError(
            f"data file {path} is not a Parquet file ({type(error).__name__}: {error})."
        ) from None
    if text_field not in table.column_names:
        raise CorpusError(
            f"data file {path}: no column {text_field!r} (columns: {', '.join(table.column_names)}); "
            "set text_field to the column holding the text."
        )
    values = table.column(text_field).to_pylist()
    for row, value in enumerate(values):
        if not isinstance(value, str):
            raise CorpusError(
                f"data file {path} row {row}: column {text_field!r} is {type(value).__name__}, not text."
            )
    return values


def file_documents(
    paths: Sequence[str | Path], *, text_field: str = "text", sample_by: str = "line"
) -> Iterator[str]:
    """The documents of local `.txt` / `.jsonl` / `.parquet` files (see the module docstring)."""
    if sample_by not in ("line", "paragraph", "document"):
        raise CorpusError(f"sample_by={sample_by!r} is not allowed; use line, paragraph or document.")
    for path in data_files(paths):
        suffix = path.suffix.lower()
        data = _read(path)
        if suffix == ".txt":
            yield from _txt_documents(path, _text(path, data), sample_by)
        elif suffix == ".jsonl":
            yield from _jsonl_documents(path, _text(path, data), text_field)
        else:
            yield from _parquet_documents(path, data, text_field)


# --- Hugging Face datasets -----------------------------------------------------------------------
def dataset_documents(
    name: str,
    *,
    config_name: str | None = None,
    split: str = "train",
    data_files: Sequence[str] | None = None,
    text_field: str = "text",
) -> Iterator[str]:
    """The `text_field` of each row of a Hugging Face dataset, streamed in the dataset's order."""
    import datasets

    try:
        dataset = datasets.load_dataset(
            name,
            config_name,
            split=split,
            streaming=True,
            data_files=list(data_files) if data_files else None,
        )
    except (FileNotFoundError, ValueError, ConnectionError) as error:
        raise CorpusError(
            f"dataset {name!r} (config {config_name!r}, split {split!r}) cannot be loaded: {error}"
        ) from None
    for number, row in enumerate(dataset):
        yield _field(f"dataset {name!r} row {number}", row, text_field)


# --- token rows ----------------------------------------------------------------------------------
class TokenRows:
    """Rows of `context_length` token ids (with the number of real tokens in each) from documents.

    `tokenize` maps a text document to its ids (documents that are id lists are used as they are).
    `pack=True` concatenates documents, each followed by `separator` (when not None); `pack=False`
    makes one row per document, truncated, right-padded with `pad_id` (its real length is given)."""

    def __init__(
        self,
        documents: Iterable[Document],
        tokenize: Callable[[str], list[int]],
        context_length: int,
        *,
        pack: bool = True,
        separator: int | None = None,
        pad_id: int = 0,
        state: dict | None = None,
    ):
        if isinstance(context_length, bool) or not isinstance(context_length, int) or context_length < 2:
            raise InputError(f"context_length={context_length!r} is not allowed; it must be an integer >= 2.")
        self.tokenize, self.context_length = tokenize, context_length
        self.pack, self.separator, self.pad_id = pack, separator, pad_id
        self.consumed = 0  # documents taken from the stream
        self.carry: list[int] = []  # tokens of the next packed row already read
        self.documents = iter(documents)
        if state is not None:
            skip = int(state["documents"])
            self.consumed = sum(1 for _ in itertools.islice(self.documents, skip))
            if self.consumed < skip:
                raise InputError(
                    f"the data ends after {self.consumed} documents, but the checkpoint was taken after "
                    f"{skip}: the data changed since the run began."
                )
            self.carry = [int(t) for t in state["carry"]]

    def state(self) -> dict:
        """Where the stream stands after the last row served (JSON values)."""
        return {"documents": self.consumed, "carry": list(self.carry)}

    def _next_ids(self) -> list[int]:
        while True:
            document = next(self.documents)  # StopIteration ends the rows
            self.consumed += 1
            ids = self.tokenize(document) if isinstance(document, str) else list(document)
            if ids:
                return ids

    def __iter__(self) -> TokenRows:
        return self

    def __next__(self) -> tuple[list[int], int]:
        n = self.context_length
        if not self.pack:
            ids = self._next_ids()[:n]
            return ids + [self.pad_id] * (n - len(ids)), len(ids)
        while len(self.carry) < n:
            ids = self._next_ids()
            self.carry += ids + ([self.separator] if self.separator is not None else [])
        row, self.carry = self.carry[:n], self.carry[n:]
        return row, n

    def batches(
        self, rows_per_batch: int, max_tokens: int | None = None
    ) -> Iterator[tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]]:
        """`(tokens, mask)` batches of up to `rows_per_batch` rows (the mask keeps real tokens);
        with `max_tokens`, they stop once that many real tokens have been served."""
        served = 0
        while max_tokens is None or served < max_tokens:
            rows = list(itertools.islice(self, rows_per_batch))
            if not rows:
                return
            tokens = torch.tensor([ids for ids, _ in rows], dtype=torch.long)
            lengths = torch.tensor([length for _, length in rows])
            mask = torch.arange(self.context_length)[None, :] < lengths[:, None]
            served += int(lengths.sum())
            yield tokens, mask
