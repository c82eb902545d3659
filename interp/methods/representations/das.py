"""Distributed alignment search (DAS; Geiger et al. 2023, "Finding Alignments Between Interpretable
Causal Variables and Distributed Neural Representations"): learn a rank-r subspace at one hook point
and position such that interchanging it, from a source prompt's activation into a base prompt's,
makes the model give the answer a high-level causal model predicts (usually the source's answer).

The interchange is h' = h_base + (h_source - h_base) B Bᵀ with B an orthonormal [d_model rank] basis;
the base keeps its coordinates outside the subspace. B is trained by Adam through
`torch.nn.utils.parametrizations.orthogonal`, with cross-entropy on the answer tokens' logits, using
TransformerLens's `transformer_lens.tools.analysis.interchange.fit_das` on the bridge's hooks.

The learned subspace is also a steering vector (`das_steer`): the difference of two classes' mean
coordinates in it (from the source activations of the training pairs), mapped back by B, is what an
interchange from a source of one class into a base of the other adds on average; `interp.generate`
adds it as a `Steer` at the hook's block and position.

An interchange accuracy needs baselines of the same rank: the leading `rank` directions of the span
of the class means of the source activations (the difference of means for two classes) and a seeded
random subspace. All three are scored
on held-out pairs the basis was not trained on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.tools.analysis import interchange

from interp.base.errors import InputError
from interp.methods.interventions import Steer
from interp.methods.representations.probes import Prompts, split_groups, tokenize_prompts
from interp.model.hooks import validate_hook_names
from interp.model.loading import HookedPhi


@dataclass(frozen=True)
class DASResult:
    """A learned subspace at `hook`, `position`, and its held-out interchange accuracy with baselines."""

    hook: str
    position: int
    rank: int
    basis: Float[Tensor, "d_model rank"]
    accuracy: Float[Tensor, ""]  # held-out pairs, the learned subspace
    mean_difference_accuracy: Float[Tensor, ""]  # the centred class means' leading `rank` directions
    random_accuracy: Float[Tensor, ""]  # a seeded random subspace of the same rank
    losses: tuple[float, ...]
    n_train: int
    n_test: int
    # mean coordinates in the subspace of the training pairs' source activations, per target (NaN: none)
    class_means: Float[Tensor, "n_classes rank"] | None = None
    answers: tuple[int, ...] | None = None  # the candidate answer token ids the targets index

    def to_dict(self) -> dict:
        return {
            "hook": self.hook,
            "position": self.position,
            "rank": self.rank,
            "accuracy": self.accuracy.item(),
            "mean_difference_accuracy": self.mean_difference_accuracy.item(),
            "random_accuracy": self.random_accuracy.item(),
            "losses": list(self.losses),
            "n_train": self.n_train,
            "n_test": self.n_test,
        }


def _equal_length_tokens(model: HookedPhi, prompts: Prompts, what: str) -> Int[Tensor, "batch pos"]:
    tokens, lengths = tokenize_prompts(model, prompts)
    if (lengths != lengths[0]).any():
        raise InputError(
            f"{what} prompts have {sorted(set(lengths.tolist()))} tokens; DAS needs every base and source "
            "prompt to have the same token count (the answer is read at the last position)."
        )
    return tokens


def _mean_difference_basis(
    acts: Float[Tensor, "batch d_model"], targets: Int[Tensor, " batch"], rank: int
) -> Float[Tensor, "d_model rank"]:
    """The leading `rank` directions of the span of the centred class means (for two classes, the
    difference of means), fewer where the means span fewer; a zero column (no interchange at all)
    where they do not differ, e.g. at a position whose activation is the same in every prompt."""
    acts = acts.float().cpu()
    means = torch.stack([acts[targets == c].mean(0) for c in targets.unique()])
    u, singular, _ = torch.linalg.svd((means - means.mean(0)).T, full_matrices=False)
    kept = int((singular > 1e-5 * max(float(acts.abs().max()), 1e-12)).sum())
    if kept == 0:
        return torch.zeros(acts.shape[1], 1)
    return u[:, : min(rank, kept)]


def fit_das(
    model: HookedPhi,
    base_prompts: Prompts,
    source_prompts: Prompts,
    answers: Sequence[int],
    targets: Int[Tensor, " batch"] | Sequence[int],
    hook: str,
    position: int = -1,
    *,
    rank: int = 1,
    test_fraction: float = 0.25,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-2,
    seed: int = 0,
) -> DASResult:
    """Fit a rank-`rank` DAS subspace at `hook` and `position` on pairs (base, source).

    `answers` are the candidate answer token ids read at the last position; `targets[i]` indexes
    `answers`: the answer expected for base i with the variable interchanged from source i. The pairs
    are split (seeded) into training and held-out pairs, a pair given twice on one side only;
    accuracies are on the held-out ones.
    """
    (hook,) = validate_hook_names(model, [hook])
    base = _equal_length_tokens(model, base_prompts, "base")
    source = _equal_length_tokens(model, source_prompts, "source")
    if base.shape != source.shape:
        raise InputError(
            f"base {tuple(base.shape)} and source {tuple(source.shape)} prompts must pair up with equal lengths."
        )
    n_pos = base.shape[1]
    if not -n_pos <= position < n_pos:
        raise InputError(
            f"position={position} is outside the {n_pos}-token prompts; use -{n_pos}..{n_pos - 1}."
        )
    answer_ids = torch.as_tensor(list(answers)).long()
    if len(answer_ids) < 2 or len(answer_ids.unique()) != len(answer_ids):
        raise InputError(f"answers={list(answers)} is not allowed; use two or more distinct token ids.")
    if answer_ids.min() < 0 or answer_ids.max() >= model.cfg.d_vocab:
        raise InputError(
            f"answers must be token ids in 0..{model.cfg.d_vocab - 1}; got {answer_ids.tolist()}."
        )
    targets = torch.as_tensor(targets).long().cpu()
    if targets.shape != (len(base),) or targets.min() < 0 or targets.max() >= len(answer_ids):
        raise InputError(
            f"targets must hold one index into answers (0..{len(answer_ids) - 1}) per pair ({len(base)})."
        )
    if not 1 <= rank < model.cfg.d_model:
        raise InputError(f"rank={rank} is not allowed; use 1..{model.cfg.d_model - 1}.")
    if not 0 < test_fraction < 1:
        raise InputError(
            f"test_fraction={test_fraction} is not allowed; use a number strictly between 0 and 1."
        )
    # equal pairs (base and source) stay on one side of the split, as equal prompts do for probes
    found = split_groups(torch.cat([base, source], dim=1), torch.full((len(base),), 2 * n_pos)).tolist()
    first: dict[int, int] = {}
    group_of = torch.tensor([first.setdefault(g, len(first)) for g in found])  # numbered by first pair
    n_groups = int(group_of.max()) + 1
    n_test_groups = round(test_fraction * n_groups)
    if n_test_groups < 1 or n_test_groups >= n_groups:
        raise InputError(
            f"{len(base)} pairs ({n_groups} distinct) cannot be split with test_fraction={test_fraction}; use "
            "more pairs."
        )

    device = model.cfg.device
    base, source = base.to(device), source.to(device)
    order = torch.randperm(n_groups, generator=torch.Generator().manual_seed(seed))
    is_test = torch.isin(group_of, order[:n_test_groups])
    test, train = torch.nonzero(is_test).flatten(), torch.nonzero(~is_test).flatten()
    n_test = len(test)
    positions = torch.full((len(base),), position % n_pos)
    answer_ids = answer_ids.to(device)

    def task_logits(tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch n_classes"]:
        return model(tokens)[:, -1, answer_ids].float()

    learned = interchange.fit_das(
        model, hook, base[train], source[train], targets[train], task_logits,
        rank=rank, base_positions=positions[train], source_positions=positions[train],
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
    )  # fmt: skip
    source_acts = interchange.collect_activations(
        model, hook, source, task_logits, positions=positions, batch_size=batch_size
    )
    mean_difference = _mean_difference_basis(source_acts[train], targets[train], rank)
    random = interchange.random_basis(source_acts.shape[1], rank, seed)

    def accuracy(basis: Float[Tensor, "d_model rank"]) -> Float[Tensor, ""]:
        logits = interchange.intervened_logits(
            model, hook, interchange.SubspaceInterchange(basis.detach()), base[test], source_acts[test],
            task_logits, positions=positions[test], batch_size=batch_size,
        )  # fmt: skip
        return (logits.argmax(-1) == targets[test]).float().mean()

    coordinates = source_acts[train].float() @ learned.basis.detach().float().to(source_acts.device)
    class_means = torch.stack(
        [coordinates[targets[train].to(coordinates.device) == c].mean(0) for c in range(len(answer_ids))]
    )
    return DASResult(
        hook=hook,
        position=position,
        rank=rank,
        basis=learned.basis.cpu(),
        accuracy=accuracy(learned.basis),
        mean_difference_accuracy=accuracy(mean_difference),
        random_accuracy=accuracy(random),
        losses=learned.losses,
        n_train=len(train),
        n_test=n_test,
        class_means=class_means.cpu(),
        answers=tuple(int(a) for a in answer_ids.tolist()),
    )


def _steer_layer(hook: str) -> int:
    match = re.fullmatch(r"blocks\.(\d+)\.hook_resid_(pre|post)", hook)
    if match is None:
        raise InputError(
            f"a DAS subspace at {hook!r} cannot steer: a Steer adds to the residual stream, so fit DAS at "
            "blocks.L.hook_resid_pre or blocks.L.hook_resid_post."
        )
    return int(match.group(1)) + (match.group(2) == "post")


def das_steer(
    result: DASResult,
    toward: int,
    away: int | None = None,
    *,
    multiplier: float = 1.0,
    positions: Sequence[int] | None = None,
) -> Steer:
    """A `Steer` along `result`'s subspace from class `away` (None: the mean of the other classes) to
    class `toward` (indices into the answers DAS was fit with): B (m_toward - m_away), the two classes'
    mean coordinates in the subspace, times `multiplier`, at the hook's residual stream.

    `positions`: absolute positions to steer (default: the position DAS was fit at, which must then
    count from the start; for a position counted from the end, pass the prompts' own)."""
    if result.class_means is None:
        raise InputError("this DASResult carries no class means; refit it with fit_das.")
    n_classes = len(result.class_means)
    present = [c for c in range(n_classes) if not result.class_means[c].isnan().any()]
    for name, value in (("toward", toward), ("away", away)):
        if value is not None and value not in present:
            raise InputError(
                f"{name}={value} is not allowed; use a target class of the training pairs: {present}."
            )
    if away == toward:
        raise InputError(f"toward and away are both {toward}; steer between two different classes.")
    others = [c for c in present if c != toward] if away is None else [away]
    if not others:
        raise InputError(
            f"only class {toward} occurs in the training pairs; there is nothing to steer away from."
        )
    if positions is None:
        if result.position < 0:
            raise InputError(
                f"DAS was fit at position {result.position} (from the end); pass positions=[...] as absolute "
                "positions of the prompts to steer."
            )
        positions = [result.position]
    shift = result.class_means[toward] - result.class_means[others].mean(0)
    return Steer(
        layer=_steer_layer(result.hook),
        vector=result.basis.float() @ shift,
        multiplier=multiplier,
        positions=list(positions),
    )
