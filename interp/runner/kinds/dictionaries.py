"""Dictionaries (`dictionary_eval`): SAEs and transcoders from files, evaluated through the model.

`dictionaries = ["path", ...]` names directories `interp.load_dictionary` reads (SAELens's or
eai-sparsify's layout); a relative path is relative to the config file, like `pairs_file`. Each is
checked against the loaded model (its hooks are hook points of the model where a dictionary can
splice in, its widths match) before any unit runs. The values are one row per dictionary, one column
per metric of `interp.dictionaries.evaluation`, on the task's clean and corrupted prompts, or on a
corpus (`CorpusOptions`: `corpus = "toy"` or `files = [...]`, cut into rows as `interp train`'s
`[data]` is, `interp.runner.text_source`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from interp.base.errors import InputError, InterpError
from interp.runner.options import AnalysisOptions
from interp.runner.registry import AnalysisSpec, Computed, Finished, UnitContext, fixed, register
from interp.runner.text_source import TextSource, check_one_source, token_rows

# the metrics reported per dictionary, in this order (interp.dictionaries.evaluation.DictionaryMetrics)
METRICS = (
    "l0", "explained_variance", "fvu", "cosine", "mse", "dead_fraction", "dense_fraction",
    "ce_clean", "ce_spliced", "ce_zero_ablated", "ce_loss_recovered", "kl",
)  # fmt: skip


class DictionaryFiles(AnalysisOptions):
    """The option of every kind that reads dictionaries from files: `dictionaries = ["path", ...]`."""

    dictionaries: list[str] = Field(
        min_length=1,
        description="directories of saved dictionaries (SAELens or eai-sparsify layout), relative to the config",
    )

    @field_validator("dictionaries")
    @classmethod
    def _directories(cls, paths: list[str]) -> list[str]:
        for path in paths:
            if not Path(path).is_dir():
                raise ValueError(
                    f"dictionary {path!r} is not a directory (a saved dictionary is a folder with cfg.json; "
                    "a relative path is relative to the config file)"
                )
        return paths


class CorpusOptions(TextSource, AnalysisOptions):
    """The options of every kind that reads a corpus: `interp train`'s source fields (a registered
    `corpus` or `files`; none: the task's clean and corrupted prompts), a token budget and a batch."""

    max_tokens: int = Field(8192, ge=2, description="corpus tokens read, at most (whole rows)")
    model_batch: int = Field(16, ge=1, description="rows per forward pass")

    @model_validator(mode="before")
    @classmethod
    def _at_most_one_source(cls, data):
        check_one_source(data, required=False, sources=("corpus", "files"))
        return data

    def unread(self) -> dict[str, str]:
        unread = self.unread_source_fields()
        if self.source is None:
            unread["max_tokens"] = "no corpus or files is given: the task's prompts are read"
        return unread


def corpus_batches(options: CorpusOptions, model, pairs) -> list:
    """`(tokens, mask)` batches of the options' corpus (at most `max_tokens` real tokens, whole rows; at
    least one row), or of the task's clean and corrupted prompts (padding masked) without one."""
    import torch

    from interp.methods.features.evaluation import prompt_tokens

    if options.source is None:
        tokens, mask = prompt_tokens(pairs)
        return [
            (tokens[i : i + options.model_batch], mask[i : i + options.model_batch])
            for i in range(0, len(tokens), options.model_batch)
        ]
    rows, lengths, served = [], [], 0
    for ids, length in token_rows(model, options, what=options.kind):
        if rows and served + length > options.max_tokens:
            break
        rows.append(ids)
        lengths.append(length)
        served += length
    if not rows:
        raise InputError(_no_rows(options))
    tokens = torch.tensor(rows, dtype=torch.long)
    mask = torch.arange(options.context_length)[None, :] < torch.tensor(lengths)[:, None]
    step = options.model_batch
    return [(tokens[i : i + step], mask[i : i + step]) for i in range(0, len(rows), step)]


def check_corpus(options: CorpusOptions, model) -> None:
    """The corpus is readable and fits the model (context length), before any unit runs."""
    if options.source is not None:
        try:
            next(iter(token_rows(model, options, what=options.kind)))
        except StopIteration:
            raise InputError(_no_rows(options)) from None


def _no_rows(options: CorpusOptions) -> str:
    why = (
        f"fewer tokens than one packed row of context_length={options.context_length} (a partial last row "
        "is dropped: give a smaller context_length, more text, or pack = false)"
        if options.pack
        else "no tokens"
    )
    return f"the {options.source} source holds {why}."


def check_dictionaries_and_corpus(options, model) -> None:
    """`check_files` and `check_corpus`: what a kind reading dictionaries over a corpus checks first."""
    check_files(options, model)
    check_corpus(options, model)


class DictionaryEvalOptions(CorpusOptions, DictionaryFiles):
    """`dictionary_eval`: evaluate dictionaries from files on the task's prompts or a corpus."""

    kind: Literal["dictionary_eval"]
    dense_threshold: float = Field(
        0.1, gt=0, le=1, description="a latent firing on more than this fraction of tokens is dense"
    )
    bins: int = Field(50, ge=1, le=1000, description="bins of the log10 latent density histogram")


def load_files(paths: list[str], option: str = "dictionaries") -> list:
    """The dictionaries `paths` (the value of `option`) name, loaded; an error names the one that does
    not load, by its index in `option`."""
    from interp.dictionaries.io import load_dictionary

    loaded = []
    for i, path in enumerate(paths):
        try:
            loaded.append(load_dictionary(path))
        except InterpError as error:
            raise InputError(f"{option}[{i}] = {path!r}: {error}") from None
    return loaded


def check_files(options: DictionaryFiles, model) -> None:
    """Each dictionary the options name loads and fits the model (hook points, widths), one by one."""
    from interp.dictionaries.splice import check_dictionaries

    for i, dictionary in enumerate(load_files(options.dictionaries)):
        try:
            check_dictionaries(model, dictionary, True)
        except InterpError as error:
            raise InputError(f"dictionaries[{i}] ({options.dictionaries[i]}): {error}") from None


def _compute(options: DictionaryEvalOptions, model, pairs, ctx: UnitContext) -> Computed:
    import math

    import torch

    from interp.methods.features.evaluation import evaluate_dictionaries

    dictionaries = load_files(options.dictionaries)
    batches = corpus_batches(options, model, pairs)
    tokens, mask = torch.cat([t for t, _ in batches]), torch.cat([m for _, m in batches])
    measured = evaluate_dictionaries(
        model,
        dictionaries,
        tokens,
        mask,
        model_batch=options.model_batch,
        dense_threshold=options.dense_threshold,
        bins=options.bins,
    )
    rows, about = [], []
    for path, d, m in zip(options.dictionaries, dictionaries, measured, strict=True):
        row = [float(getattr(m, name)) for name in METRICS]
        bad = [name for name, value in zip(METRICS, row, strict=True) if not math.isfinite(value)]
        if bad:
            raise InputError(
                f"{path}: {', '.join(bad)} undefined on these tokens (e.g. ce_loss_recovered when zero-ablating "
                f"{d.hook_name_out} does not change the loss); evaluate on more or other tokens."
            )
        rows.append(row)
        about.append(
            {
                "path": path,
                "architecture": d.architecture,
                "dictionary_kind": d.kind,
                "hook_name": d.hook_name,
                "hook_name_out": d.hook_name_out,
                "d_sae": d.d_sae,
                "n_tokens": m.n_tokens,
                "histogram_counts": m.histogram_counts.tolist(),
                "histogram_edges": m.histogram_edges.tolist(),
            }
        )
    labels = [
        f"{Path(p).name} ({d.hook_name_out})" for p, d in zip(options.dictionaries, dictionaries, strict=True)
    ]
    return Computed(
        ("dictionary", "metric"),
        torch.tensor(rows, dtype=torch.float64),
        {"dictionary": labels, "metric": list(METRICS)},
        {"dictionary_metrics": about},
    )


register(
    AnalysisSpec(
        kind="dictionary_eval",
        summary="SAEs and transcoders from files: L0, explained variance, CE loss recovered, KL, dead latents",
        explanation=(
            "Dictionary evaluation: each dictionary's latents per token (L0), the variance of the activation it "
            "explains, how much of the next-token loss its output recovers when spliced in ((CE zero-ablated - "
            "CE spliced) / (CE zero-ablated - CE clean)), the KL of the spliced model's predictions to the "
            "model's, and its dead (never firing) and dense latents."
        ),
        per_prompt=False,
        options=DictionaryEvalOptions,
        dims=fixed("dictionary", "metric"),
        compute=_compute,
        finish=lambda options, mean, clean, corrupted: Finished(
            mean, "each dictionary's metrics, one column per metric", None
        ),
        figures=("dictionary_metrics",),
        check=check_dictionaries_and_corpus,
    )
)
