"""Where a corpus's text comes from, spelled once for `interp train`'s `[data]` table and for the
analysis kinds that read a corpus (`dictionary_eval`, `feature_cards`).

One source, named by the field that is set:

- `corpus = "toy"`: a registered corpus (`interp.data.corpus`; the toy registers its training
  mixture), drawn from a stream seeded by `seed`;
- `files = [...]`: local `.txt` / `.jsonl` / `.parquet` files or directories of them (`sample_by`
  for `.txt`, `text_field` for `.jsonl` / `.parquet`);
- `dataset = "..."` (`[data]` only, `DatasetSource`): a Hugging Face dataset, streamed (a hub name, a
  local dataset directory, or a builder such as `"json"` / `"parquet"` with `data_files`;
  `dataset_config`, `split`). An analysis reads a local copy through `files` instead: its streams
  are for training budgets.

The text is tokenised into rows of `context_length` tokens, packed (documents concatenated, each
followed by end-of-text) or one row per document (`pack = false`). A field that only another kind of
source reads is refused when set (`ONLY_FOR`). `interp train` needs a source; an analysis without one
reads the task's prompts instead. Relative paths (`files`, `data_files`, a `dataset` that is a folder
beside the config) are resolved against the config file's folder by `resolve_paths`.

This module is light (pydantic only); `documents` and `token_rows` import the readers when called.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from interp.base.errors import InputError

SOURCES = ("corpus", "dataset", "files")
# fields that only one kind of source reads
ONLY_FOR: dict[str, tuple[str, ...]] = {
    "seed": ("corpus",),
    "dataset_config": ("dataset",),
    "split": ("dataset",),
    "data_files": ("dataset",),
    "sample_by": ("files",),
    "text_field": ("dataset", "files"),
}
TOKEN_FIELDS = ("context_length", "pack")  # read by every source


class TextSource(BaseModel):
    """The fields that name a corpus or files and cut them into token rows (mixed into a config table)."""

    corpus: str | None = Field(None, description="a registered corpus, e.g. 'toy' (the toy's training mix)")
    files: list[str] | None = Field(
        None,
        description="local .txt / .jsonl / .parquet files or directories of them (relative to the config)",
    )
    seed: int = Field(0, ge=0, lt=2**63, description="corpus: the seed of its stream")
    text_field: str = Field("text", description="dataset / .jsonl / .parquet: the field holding the text")
    sample_by: Literal["line", "paragraph", "document"] = Field(
        "line", description="files: a .txt document is a line, a blank-line-separated paragraph, or the file"
    )
    context_length: int = Field(128, ge=2, le=1 << 20, description="tokens per row")
    pack: bool = Field(
        True,
        description="true: documents concatenated (each followed by end-of-text) and cut into rows; "
        "false: one row per document, truncated",
    )

    @property
    def source(self) -> str | None:
        """The field that names the source (`corpus`, `dataset` or `files`), or None."""
        return next((name for name in SOURCES if getattr(self, name, None) is not None), None)

    @classmethod
    def source_fields(cls) -> tuple[str, ...]:
        """The fields of this model that belong to the source (what an analysis without one ignores)."""
        return tuple(name for name in (*SOURCES, *ONLY_FOR, *TOKEN_FIELDS) if name in cls.model_fields)

    def unread_source_fields(self) -> dict[str, str]:
        """Source fields these values make the reader ignore, each with the reason."""
        source = self.source
        if source is None:
            why = "no corpus or files is given: the task's prompts are read"
            return dict.fromkeys(self.source_fields(), why)
        fields = type(self).model_fields
        unread = {name: f"{source} is the source" for name in SOURCES if name in fields and name != source}
        return unread | {
            name: f"it applies to {' / '.join(sources)}, not to a {source} source"
            for name, sources in ONLY_FOR.items()
            if name in fields and source not in sources
        }


class DatasetSource(TextSource):
    """`TextSource` and a streamed Hugging Face dataset (`interp train`'s `[data]`)."""

    dataset: str | None = Field(
        None,
        description="a Hugging Face dataset, streamed: a hub name, a local dataset directory, or a builder "
        "such as 'json' / 'parquet' with data_files",
    )
    dataset_config: str | None = Field(None, description="dataset: its configuration name")
    split: str = Field("train", description="dataset: the split streamed")
    data_files: list[str] | None = Field(
        None, description="dataset: files for a builder (relative to the config)"
    )


def check_one_source(data: Any, required: bool, sources: tuple[str, ...] = SOURCES) -> None:
    """Refuse (ValueError) a table that names several of `sources`, none when `required`, or a field that
    only another kind of source reads."""
    if not isinstance(data, dict):
        return
    given = [name for name in sources if data.get(name) is not None]
    names = f"{', '.join(sources[:-1])} or {sources[-1]}"
    if len(given) > 1 or (required and not given):
        raise ValueError(
            f"give {'exactly' if required else 'at most'} one data source: {names} "
            f"(given: {', '.join(given) or 'none'})"
        )
    source = given[0] if given else None
    nothing = f"the task's prompts (no {names} is given)"
    for name, readers in ONLY_FOR.items():
        if name in data and source not in readers:
            raise ValueError(
                f"{name} applies to {' / '.join(readers)}, not to {f'a {source} source' if source else nothing}"
            )
    if source is None:
        for name in TOKEN_FIELDS:
            if name in data:
                raise ValueError(f"{name} applies to a {' / '.join(sources)} source, not to {nothing}")


def resolve_paths(table: dict, base_dir: str | Path) -> dict:
    """`table` with `files` and `data_files` made absolute against `base_dir` (the config file's folder),
    and a `dataset` that names a folder there: the resolved config then names the same data anywhere."""
    table = dict(table)
    for key in ("files", "data_files"):
        if isinstance(table.get(key), list):
            table[key] = [
                os.path.abspath(Path(base_dir) / p) if isinstance(p, str) and p else p for p in table[key]
            ]
    dataset = table.get("dataset")
    if isinstance(dataset, str) and dataset and (Path(base_dir) / dataset).is_dir():
        table["dataset"] = os.path.abspath(Path(base_dir) / dataset)
    return table


def documents(source: TextSource):
    """The source's documents, in their deterministic order (an iterator)."""
    from interp.data import corpus

    if source.source == "corpus":
        return corpus.corpus_documents(source.corpus, source.seed)
    if source.source == "dataset" and isinstance(source, DatasetSource):
        return corpus.dataset_documents(
            source.dataset,
            config_name=source.dataset_config,
            split=source.split,
            data_files=source.data_files,
            text_field=source.text_field,
        )
    if source.source == "files":
        return corpus.file_documents(source.files, text_field=source.text_field, sample_by=source.sample_by)
    raise InputError("no corpus, dataset or files is given to read text from.")


def token_rows(model, source: TextSource, state: dict | None = None, what: str = "data"):
    """The source's `TokenRows` through the model's tokenizer (from `state`, a checkpoint's position);
    `what` names the table in errors."""
    from interp.data.corpus import TokenRows

    tokenizer = model.tokenizer
    if source.context_length > model.cfg.n_ctx:
        raise InputError(
            f"{what}.context_length={source.context_length} is longer than the model's context ({model.cfg.n_ctx})."
        )

    def tokenize(text: str) -> list[int]:
        return tokenizer(text)["input_ids"]

    return TokenRows(
        documents(source),
        tokenize,
        source.context_length,
        pack=source.pack,
        separator=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        state=state,
    )
