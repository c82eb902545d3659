"""Patching metrics, computed per prompt from the logits at each prompt's own final position.

A `Metric` maps final-position logits `[n, d_vocab]` of prompts `index` (positions in the dataset)
to one value per prompt; sweeps average them (or keep them per prompt). Kinds:

- `logit_diff`: logit(answer) - logit(wrong).
- `prob`: softmax probability of the answer (over all `d_vocab` logits, as the model samples).
- `log_prob`: log of that probability.
- `kl`: KL(clean || patched), the divergence of the patched next-token distribution from the
  clean run's; 0 when the clean behaviour is fully present, so lower is "more clean".

`normalise` turns any of them into (patched - corrupted) / (clean - corrupted): 0 means the patch
did nothing to the corrupted run, 1 means it restored the clean value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.base.errors import InputError

MetricKind = Literal["logit_diff", "prob", "log_prob", "kl"]
METRIC_KINDS: tuple[MetricKind, ...] = ("logit_diff", "prob", "log_prob", "kl")


@dataclass
class Metric:
    """A metric over final-position logits with each prompt's answer and wrong tokens (see the module docstring)."""

    kind: MetricKind
    answer: Int[Tensor, " batch"]
    wrong: Int[Tensor, " batch"]
    clean_log_probs: Float[Tensor, "batch d_vocab"] | None = None

    def __call__(
        self, final_logits: Float[Tensor, "batch d_vocab"], index: Int[Tensor, " batch"]
    ) -> Float[Tensor, " batch"]:
        logits = final_logits.float()
        index = index.to(logits.device)
        rows = torch.arange(logits.shape[0], device=logits.device)
        answer = self.answer.to(logits.device)[index]
        if self.kind == "logit_diff":
            return logits[rows, answer] - logits[rows, self.wrong.to(logits.device)[index]]
        log_probs = logits.log_softmax(-1)
        if self.kind == "log_prob":
            return log_probs[rows, answer]
        if self.kind == "prob":
            return log_probs[rows, answer].exp()
        if self.kind == "kl":
            if self.clean_log_probs is None:
                raise InputError("the kl metric needs the clean run's log-probs")
            clean = self.clean_log_probs.to(logits.device)[index].float()
            return (clean.exp() * (clean - log_probs)).sum(-1)
        raise InputError(f"unknown metric kind {self.kind!r}; allowed: {', '.join(METRIC_KINDS)}")


def make_metric(
    kind: MetricKind,
    answer: Int[Tensor, " batch"],
    wrong: Int[Tensor, " batch"],
    clean_final_logits: Float[Tensor, "batch d_vocab"] | None = None,
) -> Metric:
    """A metric of `kind` for prompts whose answer/wrong tokens are `answer`/`wrong`.

    `clean_final_logits` (the clean run's final-position logits) is needed by `kl` only.
    """
    if kind not in METRIC_KINDS:
        raise InputError(f"unknown metric {kind!r}; allowed: {', '.join(METRIC_KINDS)}")
    clean_log_probs = clean_final_logits.float().log_softmax(-1) if clean_final_logits is not None else None
    return Metric(kind, answer, wrong, clean_log_probs)


def resolve_metric(
    metric: MetricKind | Metric, pairs, clean_final_logits: Float[Tensor, "batch d_vocab"]
) -> Metric:
    """`metric` itself if it is a `Metric`, else a new one of that kind for `pairs` (a `PromptPairs`)."""
    if isinstance(metric, Metric):
        return metric
    return make_metric(metric, pairs.answer, pairs.wrong, clean_final_logits)


def normalise(patched: Tensor, clean: Tensor | float, corrupted: Tensor | float) -> Tensor:
    """(patched - corrupted) / (clean - corrupted); raises if clean and corrupted coincide."""
    gap = torch.as_tensor(clean) - torch.as_tensor(corrupted)
    if torch.any(gap.abs() < 1e-12):
        raise InputError(
            "clean and corrupted metrics are equal, so a normalised score is undefined: "
            "the corrupted prompts do not change the behaviour being measured."
        )
    return (patched - torch.as_tensor(corrupted)) / gap
