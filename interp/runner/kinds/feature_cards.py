"""Feature cards (`feature_cards`): `interp.dictionaries.cards.feature_cards` of each dictionary over a corpus.

`dictionaries = ["path", ...]`: directories `interp.load_dictionary` reads (SAELens's or eai-sparsify's
layout), relative to the config file's folder. Each is checked against the loaded model before any
unit runs: its hook is a hook point of the model and its width that hook's. The corpus is the task's
clean prompts (`task`) or a text file
(`.txt`, one document per line, or `.jsonl` with a `text` field, relative to the config file),
tokenized by the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, NonNegativeInt, field_validator

from interp.base.errors import InputError, InterpError
from interp.runner.options import AnalysisOptions
from interp.runner.registry import AnalysisSpec, Computed, Finished, UnitContext, fixed, register

RankBy = Literal["density", "max_act", "mean_act"]  # interp.dictionaries.feature_stats.FeatureStats.top
STATISTICS = ["density", "max_act", "mean_act"]
MAX_CORPUS_BYTES = 256 * 1024**2
CORPUS_KEYWORDS = ("task",)  # any other corpus value is a file


class FeatureCardsOptions(AnalysisOptions):
    """`feature_cards`: cards of chosen latents of each dictionary over a corpus."""

    kind: Literal["feature_cards"]
    dictionaries: list[str] = Field(
        min_length=1,
        description="dictionary directories (SAELens or sparsify layout), relative to the config file",
    )
    features: list[NonNegativeInt] = Field(
        default_factory=list,
        description="the latents to show, the same for each dictionary (empty: the top_n)",
    )
    top_n: int = Field(16, ge=1, le=4096, description="latents shown per dictionary when features is empty")
    sort_by: RankBy = Field("density", description="what top_n ranks by: density, max_act or mean_act")
    n_contexts: int = Field(10, ge=1, le=100, description="top-activating contexts kept per latent")
    n_tokens: int = Field(10, ge=1, le=100, description="promoted / suppressed (and input) tokens per card")
    corpus: str = Field(
        "task",
        description="task: the task's clean prompts; or a .txt (one document per line) / .jsonl (a 'text' "
        "field per line) file, relative to the config file",
    )
    corpus_rows: int = Field(256, ge=1, le=1_000_000, description="documents read from the corpus file")
    context_length: int = Field(64, ge=2, le=4096, description="tokens kept per document of a corpus file")

    @field_validator("corpus")
    @classmethod
    def _a_corpus(cls, corpus: str) -> str:
        if corpus not in CORPUS_KEYWORDS and Path(corpus).suffix not in (".txt", ".jsonl"):
            raise ValueError(f"corpus must be 'task' or a .txt / .jsonl file, not {corpus!r}")
        return corpus

    def unread(self) -> dict[str, str]:
        unread = {}
        if self.features:
            unread |= {
                "top_n": "features names the latents (top_n is for an empty features)",
                "sort_by": "features names the latents (sort_by ranks for top_n)",
            }
        if self.corpus == "task":
            unread |= {
                name: "corpus = 'task' reads the task's prompts" for name in ("corpus_rows", "context_length")
            }
        return unread


def _labels(paths: list[str]) -> list[str]:
    """A short label per dictionary: its directory's name, numbered where two share one."""
    names = [Path(p).name or p for p in paths]
    return [f"{n}[{i}]" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _hook_width(model, hook: str) -> int | None:
    from interp.engine.hook_points import BLOCK_POINTS, MODEL_POINTS

    point = hook.split(".", 2)[2] if hook.startswith("blocks.") else hook
    dims = BLOCK_POINTS.get(point) or MODEL_POINTS.get(point)
    return getattr(model.cfg, dims.split()[-1], None) if dims else None


def _load(options: FeatureCardsOptions, model) -> list:
    from interp.dictionaries import load_dictionary
    from interp.model.hooks import validate_hook_names

    loaded = []
    for path in options.dictionaries:
        try:
            dictionary = load_dictionary(path)
            hooks = [h for h in (dictionary.hook_name, dictionary.hook_name_out) if h is not None]
            if dictionary.hook_name is None:
                raise InputError("it names no hook it reads")
            validate_hook_names(model, hooks)
        except (InterpError, KeyError) as error:
            raise InputError(f"dictionaries: {path}: {error}") from None
        width = _hook_width(model, dictionary.hook_name)
        if width is not None and width != dictionary.d_in:
            raise InputError(
                f"dictionaries: {path} reads {dictionary.d_in} dims at {dictionary.hook_name}, which is "
                f"{width} wide in this model"
            )
        bad = [f for f in options.features if f >= dictionary.d_sae]
        if bad:
            raise InputError(f"features = {bad} are not latents of {path} (0 .. {dictionary.d_sae - 1})")
        loaded.append(dictionary.to(model.cfg.device))
    return loaded


def _check(options: FeatureCardsOptions, model) -> None:
    _load(options, model)
    if options.corpus not in CORPUS_KEYWORDS:
        _file_documents(options)
        if options.context_length > model.cfg.n_ctx:
            raise InputError(
                f"context_length = {options.context_length} is longer than the model's context ({model.cfg.n_ctx})"
            )


def _file_documents(options: FeatureCardsOptions) -> list[str]:
    from interp.base.files import read_regular

    path = Path(options.corpus)
    try:
        text = read_regular(path, MAX_CORPUS_BYTES, what="corpus").decode("utf-8")
    except FileNotFoundError:
        raise InputError(
            f"corpus {path} does not exist (a relative path is relative to the config file)"
        ) from None
    except UnicodeDecodeError as error:
        raise InputError(f"corpus {path} is not UTF-8 text (byte {error.start})") from None
    except InterpError as error:  # a directory, a FIFO, a file over the size limit
        raise InputError(str(error)) from None
    documents = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"corpus {path} line {number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise InputError(f"corpus {path} line {number}: each line is an object with a 'text' string")
            line = row["text"]
        documents.append(line)
        if len(documents) == options.corpus_rows:
            break
    if not documents:
        raise InputError(f"corpus {path} holds no documents")
    return documents


def _corpus(options: FeatureCardsOptions, model, pairs) -> list:
    """(tokens, mask) batches of the chosen corpus; the mask keeps real positions."""
    import torch

    if options.corpus == "task":
        positions = torch.arange(pairs.clean_tokens.shape[1])
        return [(pairs.clean_tokens, positions[None, :] < pairs.lengths[:, None])]
    documents = _file_documents(options)
    encoded = [
        model.tokenizer(doc, add_special_tokens=False)["input_ids"][: options.context_length]
        for doc in documents
    ]
    encoded = [ids for ids in encoded if ids]
    batches = []
    for start in range(0, len(encoded), 32):
        chunk = encoded[start : start + 32]
        width = max(map(len, chunk))
        tokens = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.bool)
        for r, ids in enumerate(chunk):
            tokens[r, : len(ids)] = torch.tensor(ids)
            mask[r, : len(ids)] = True
        batches.append((tokens, mask))
    return batches


def _compute(options: FeatureCardsOptions, model, pairs, ctx: UnitContext) -> Computed:
    import torch

    from interp.dictionaries.cards import feature_cards

    corpus = _corpus(options, model, pairs)
    cards = []
    for label, dictionary in zip(_labels(options.dictionaries), _load(options, model), strict=True):
        cards += feature_cards(
            model,
            dictionary,
            corpus,
            features=options.features or None,
            top_n=None if options.features else options.top_n,
            by=options.sort_by,
            label=label,
            n_contexts=options.n_contexts,
            n_tokens=options.n_tokens,
        )
    values = torch.tensor([[c.density, c.max_act, c.mean_act] for c in cards], dtype=torch.float32)
    labels = {"feature": [c.title for c in cards], "statistic": STATISTICS}
    return Computed(("feature", "statistic"), values, labels, {"feature_cards": [c.to_dict() for c in cards]})


register(
    AnalysisSpec(
        kind="feature_cards",
        summary="feature cards of chosen latents of SAEs / transcoders over a corpus, with a browser",
        explanation=(
            "Feature cards: for each latent, its density (fraction of corpus tokens it is active on), largest and "
            "mean activation, the histogram of its activations, its top-activating contexts with the activation "
            "on every token, and the tokens its decoder direction promotes and suppresses through the final "
            "LayerNorm and unembedding (TransformerLens's logit-lens reading of a direction); a transcoder's "
            "card also lists the tokens whose embeddings drive it."
        ),
        per_prompt=False,
        options=FeatureCardsOptions,
        dims=fixed("feature", "statistic"),
        compute=_compute,
        finish=lambda options, mean, clean, corrupted: Finished(
            mean, "density (fraction of tokens active), max and mean activation of each latent", None
        ),
        figures=("feature_browser",),  # drawn by interp/report/features.py
        check=_check,
    )
)
