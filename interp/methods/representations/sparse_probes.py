"""Sparse probes: can a label be read from a few units of one hook point (MLP neurons at
`blocks.L.mlp.hook_post`, a spliced dictionary's latents at `<hook>.dict.hook_acts`)?

The units are ranked by the absolute difference of their class means on the *training* prompts only,
and a binary logistic probe is fit on the top k of them for each k asked for; accuracy is measured on
held-out prompts the ranking and the probe never saw. Two controls per k: probes on k units drawn at
random (is the ranking what makes k units enough?) and the whole ranking and fit redone with shuffled
training labels (can k units of this width fit anything?), both scored on the true held-out labels.
Where a few units carry the label strongly, a shuffled refit still picks them (they spread most) with
a sign that is a coin flip, so single refits land near 0 or 1: read the mean of several. The fits
weight the classes equally, so with one class rare, accuracy can sit below the constant answer
(`chance`): read the ROC AUC (chance 0.5) beside the controls' ROC AUC.

TransformerLens's `transformer_lens.tools.analysis.sparse_probing.sweep_sparse_probe` does the
ranking, fits and controls on an activation matrix (binary labels, whole groups held out). This
module reads that matrix from the model at one position (`probes.activations_at`), makes each distinct
prompt a group (a prompt that occurs twice lands on one side of the split), reads a multi-class label
as one class against the rest, and averages the controls' repeats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens.tools.analysis import sparse_probing

from interp.base.errors import InputError
from interp.methods.representations.probes import (
    Prompts,
    activations_at,
    split_groups,
    tokenize_prompts,
)
from interp.model.loading import HookedPhi


@dataclass(frozen=True)
class SparseProbeCurve:
    """Held-out accuracy of k-unit probes at `hook`, `position`, for each k in `ks`, with controls.

    `ranking` orders every unit of the hook by |class-mean difference| on the training prompts; the
    probe of size k reads `ranking[:k]` (`units(k)`)."""

    hook: str
    position: int
    positive: int  # the label read as the positive class (the others: negative)
    ks: tuple[int, ...]
    accuracy: Float[Tensor, " sparsity"]  # held-out prompts, the top-k units
    roc_auc: Float[Tensor, " sparsity"]
    random_accuracy: Float[Tensor, " sparsity"]  # mean over random k-unit subsets (NaN: none converged)
    shuffled_accuracy: Float[Tensor, " sparsity"]  # mean over shuffled-label refits (NaN: none)
    random_roc_auc: Float[Tensor, " sparsity"]  # the same controls' ROC AUC (chance: 0.5)
    shuffled_roc_auc: Float[Tensor, " sparsity"]
    chance: float  # held-out accuracy of the best constant answer (the larger class's share)
    ranking: Int[Tensor, " d_probe"]
    scores: Float[Tensor, " d_probe"]  # class-mean difference (positive - negative) on training prompts
    n_train: int
    n_test: int
    n_rejected: int  # control fits that did not converge (left out of the means)

    def units(self, k: int) -> Int[Tensor, " d_probe"]:
        """The k units the size-k probe reads, best first."""
        if k not in self.ks:
            raise InputError(f"k={k} was not probed; use one of {list(self.ks)}.")
        return self.ranking[:k]

    def to_dict(self) -> dict:
        top = self.ranking[: self.ks[-1]]
        return {
            "hook": self.hook,
            "position": self.position,
            "positive": self.positive,
            "ks": list(self.ks),
            "accuracy": self.accuracy.tolist(),
            "roc_auc": self.roc_auc.tolist(),
            "random_accuracy": self.random_accuracy.tolist(),
            "shuffled_accuracy": self.shuffled_accuracy.tolist(),
            "random_roc_auc": self.random_roc_auc.tolist(),
            "shuffled_roc_auc": self.shuffled_roc_auc.tolist(),
            "chance": self.chance,
            "units": top.tolist(),
            "unit_scores": self.scores[top].tolist(),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_rejected": self.n_rejected,
        }


def _check_ks(ks: Sequence[int], width: int) -> tuple[int, ...]:
    if isinstance(ks, int | str) or not ks:
        raise InputError(f"ks={ks!r} is not allowed; use a non-empty list of sizes, e.g. [1, 2, 4, 8].")
    ks = tuple(ks)
    if not all(isinstance(k, int) and not isinstance(k, bool) for k in ks):
        raise InputError(f"ks={list(ks)} is not allowed; sizes are integers.")
    if any(b <= a for a, b in zip(ks, ks[1:], strict=False)) or ks[0] < 1 or ks[-1] > width:
        raise InputError(
            f"ks={list(ks)} is not allowed; use strictly increasing sizes in 1..{width} (the hook's width)."
        )
    return ks


def _chance(positive: Bool[Tensor, " batch"]) -> float:
    """The held-out accuracy of always answering the more common of the two classes."""
    share = positive.float().mean().item()
    return max(share, 1 - share)


def _mean(values: Sequence[Float[Tensor, " _"]]) -> Float[Tensor, " sparsity"]:  # one per size
    return torch.stack([v.float().mean() if v.numel() else torch.tensor(float("nan")) for v in values])


@torch.no_grad()
def sparse_probe(
    model: HookedPhi,
    prompts: Prompts,
    labels: Int[Tensor, " batch"] | Sequence[int],
    hook: str,
    ks: Sequence[int],
    position: int = -1,
    *,
    positive: int = 1,
    test_fraction: float = 0.25,
    n_random: int = 5,
    n_shuffles: int = 1,
    l2: float = 1e-2,
    standardize: bool = True,
    max_iter: int = 200,
    seed: int = 0,
    groups: Int[Tensor, " batch"] | Sequence[int] | None = None,
) -> SparseProbeCurve:
    """Probes on the top-k units of `hook` at `position` (negative: from each prompt's end) for each
    k in `ks`, reading label `positive` against the others, with `n_random` random k-unit subsets
    and `n_shuffles` shuffled-label refits per k as controls.

    `l2`: the logistic penalty; `standardize`: scale each chosen unit by its training spread first
    (False: raw activations). Split, ranking and controls are seeded by `seed`; prompts sharing a
    `groups` id (and equal prompts) stay on one side of the split."""
    if not isinstance(hook, str):
        raise InputError(f"hook={hook!r} is not allowed; use one hook name (a string).")
    if n_random < 0 or n_shuffles < 0:
        raise InputError(f"n_random={n_random} and n_shuffles={n_shuffles}: use counts >= 0.")
    if not 0 < test_fraction < 1:
        raise InputError(
            f"test_fraction={test_fraction} is not allowed; use a number strictly between 0 and 1."
        )
    if not l2 > 0 or max_iter < 1:
        raise InputError(f"l2={l2} and max_iter={max_iter}: use l2 > 0 and max_iter >= 1.")
    tokens, lengths = tokenize_prompts(model, prompts)
    labels = torch.as_tensor(labels).long().cpu()
    if labels.shape != (len(tokens),):
        raise InputError(f"labels has shape {tuple(labels.shape)}; use one label per prompt ({len(tokens)}).")
    present = labels.unique().tolist()
    if positive not in present or len(present) < 2:
        raise InputError(
            f"positive={positive} must be one of the labels {present}, and at least one other label must occur."
        )
    x = activations_at(model, tokens, lengths, [hook], position)[hook]
    ks = _check_ks(ks, x.shape[1])
    try:
        sweep = sparse_probing.sweep_sparse_probe(
            x, labels == positive, ks=ks, test_fraction=test_fraction, groups=split_groups(tokens, lengths, groups),
            preprocess="standardize" if standardize else "none", l2_strength=l2,
            n_random_subsets=n_random, n_label_shuffles=n_shuffles, seed=seed, max_iter=max_iter,
        )  # fmt: skip
    except sparse_probing.SparseProbeConvergenceError as error:
        raise InputError(
            f"{error}; a larger l2 (now {l2}) or max_iter (now {max_iter}) may converge."
        ) from error
    except ValueError as error:  # the split or the labels do not fit the sweep's contract
        raise InputError(f"sparse probe at {hook}: {error}.") from error
    first = sweep.results[0]
    return SparseProbeCurve(
        hook=hook,
        position=position,
        positive=positive,
        ks=ks,
        accuracy=torch.tensor([r.metrics.accuracy for r in sweep.results]),
        roc_auc=torch.tensor([r.metrics.roc_auc for r in sweep.results]),
        random_accuracy=_mean([c.accuracy for c in sweep.random_coordinate_controls]),
        shuffled_accuracy=_mean([c.accuracy for c in sweep.label_shuffle_controls]),
        random_roc_auc=_mean([c.roc_auc for c in sweep.random_coordinate_controls]),
        shuffled_roc_auc=_mean([c.roc_auc for c in sweep.label_shuffle_controls]),
        chance=_chance(labels[first.test_indices] == positive),
        ranking=torch.argsort(first.feature_scores.abs(), descending=True, stable=True),
        scores=first.feature_scores.float(),
        n_train=len(first.train_indices),
        n_test=len(first.test_indices),
        n_rejected=len(sweep.rejections),
    )
