"""Feature cards (`feature_cards`): `interp.dictionaries.cards.feature_cards` of each dictionary over a corpus.

`dictionaries = ["path", ...]`: directories `interp.load_dictionary` reads (SAELens's or eai-sparsify's
layout), relative to the config file's folder, each checked against the loaded model before any unit
runs (`kinds.dictionaries.DictionaryFiles`). The corpus is the task's clean and corrupted prompts, or
a registered `corpus` / `files`, cut into rows as `interp train`'s `[data]` is
(`kinds.dictionaries.CorpusOptions`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, NonNegativeInt

from interp.base.errors import InputError
from interp.runner.kinds.dictionaries import (
    CorpusOptions,
    DictionaryFiles,
    check_dictionaries_and_corpus,
    corpus_batches,
    load_files,
)
from interp.runner.registry import AnalysisSpec, Computed, Finished, UnitContext, fixed, register

RankBy = Literal["density", "max_act", "mean_act"]  # interp.dictionaries.feature_stats.FeatureStats.top
STATISTICS = ["density", "max_act", "mean_act"]


class FeatureCardsOptions(CorpusOptions, DictionaryFiles):
    """`feature_cards`: cards of chosen latents of each dictionary over a corpus."""

    kind: Literal["feature_cards"]
    features: list[NonNegativeInt] = Field(
        default_factory=list,
        description="the latents to show, the same for each dictionary (empty: the top_n)",
    )
    top_n: int = Field(16, ge=1, le=4096, description="latents shown per dictionary when features is empty")
    sort_by: RankBy = Field("density", description="what top_n ranks by: density, max_act or mean_act")
    n_contexts: int = Field(10, ge=1, le=100, description="top-activating contexts kept per latent")
    n_tokens: int = Field(10, ge=1, le=100, description="promoted / suppressed (and input) tokens per card")
    head_layers: list[NonNegativeInt] = Field(
        default_factory=lambda: [0],
        description="transcoders: the layers whose heads' OV paths from the token embeddings into a latent its "
        "card lists (those that write before the transcoder reads)",
    )

    def unread(self) -> dict[str, str]:
        unread = super().unread()
        if self.features:
            unread |= {
                "top_n": "features names the latents (top_n is for an empty features)",
                "sort_by": "features names the latents (sort_by ranks for top_n)",
            }
        return unread


def _labels(paths: list[str]) -> list[str]:
    """A short label per dictionary: its directory's name, numbered where two share one."""
    names = [Path(p).name or p for p in paths]
    return [f"{n}[{i}]" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _load(options: FeatureCardsOptions, model) -> list:
    loaded = []
    for path, dictionary in zip(options.dictionaries, load_files(options.dictionaries), strict=True):
        bad = [f for f in options.features if f >= dictionary.d_sae]
        if bad:
            raise InputError(f"features = {bad} are not latents of {path} (0 .. {dictionary.d_sae - 1})")
        loaded.append(dictionary.to(model.cfg.device))
    return loaded


def _check(options: FeatureCardsOptions, model) -> None:
    check_dictionaries_and_corpus(options, model)
    loaded = _load(options, model)
    n_layers = model.cfg.n_layers
    bad = [layer for layer in options.head_layers if layer >= n_layers]
    if bad:
        raise InputError(f"head_layers = {bad} are not layers of this model (0 .. {n_layers - 1})")
    if "head_layers" in options.model_fields_set and all(d.kind == "sae" for d in loaded):
        raise InputError(
            "head_layers is read for transcoders' cards only (their input directions); every dictionary here "
            "is an SAE"
        )


def _compute(options: FeatureCardsOptions, model, pairs, ctx: UnitContext) -> Computed:
    import torch

    from interp.dictionaries.cards import feature_cards

    corpus = [
        (t.to(model.cfg.device), m.to(model.cfg.device)) for t, m in corpus_batches(options, model, pairs)
    ]
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
            head_layers=options.head_layers,
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
