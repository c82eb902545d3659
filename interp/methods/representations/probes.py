"""Linear probes: does a hook point's activation at one position linearly encode a label?

For each hook, the activations at one position of every prompt (the last token by default) are read
in one forward pass per prompt length, and a multinomial logistic regression with an L2 penalty is fit
by full-batch L-BFGS on a training split of the prompts. The split is by prompt (seeded): a prompt
that occurs twice lands on one side only, so held-out accuracy measures generalisation, not recall;
`groups` keeps related prompts together too (a pair's clean and corrupted prompts differ in one name:
with one on each side a probe can score below chance, by reading what tells the twins apart).

Held-out accuracy alone over-reads a probe: a wide enough activation separates any labels on few
prompts. Each hook therefore also gets a control probe, trained the same way on the same activations
with the training labels shuffled and scored on the true held-out labels; it should sit at chance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.data.prompts import length_groups
from interp.model.cache import cache_activations
from interp.model.hooks import validate_hook_names
from interp.model.loading import HookedPhi

# strings, an equal-length [batch pos] tensor of token ids, or one 1-D tensor of token ids per prompt
Prompts = Sequence[str] | Int[Tensor, "batch pos"] | Sequence[Int[Tensor, " _pos"]]


@dataclass(frozen=True)
class ProbeResult:
    """One probe per hook, all read at `position`; accuracies in hook order."""

    hooks: tuple[str, ...]
    position: int
    accuracy: Float[Tensor, " hook"]  # held-out prompts
    train_accuracy: Float[Tensor, " hook"]
    shuffled_accuracy: Float[Tensor, " hook"]  # the control: trained on shuffled labels
    chance: float  # held-out accuracy of the best constant answer (the most common held-out label's share)
    weights: tuple[Float[Tensor, "n_classes d_probe"], ...]  # in activation space, one per hook
    biases: tuple[Float[Tensor, " n_classes"], ...]
    n_train: int
    n_test: int

    def to_dict(self) -> dict:
        return {
            "hooks": list(self.hooks),
            "position": self.position,
            "accuracy": self.accuracy.tolist(),
            "train_accuracy": self.train_accuracy.tolist(),
            "shuffled_accuracy": self.shuffled_accuracy.tolist(),
            "chance": self.chance,
            "n_train": self.n_train,
            "n_test": self.n_test,
        }


def tokenize_prompts(
    model: HookedPhi, prompts: Prompts
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, " batch"]]:
    """Right-padded token ids and each prompt's length, from strings, an equal-length token tensor or
    one token tensor per prompt."""
    if not isinstance(prompts, Tensor | str) and len(prompts) and all(isinstance(p, Tensor) for p in prompts):
        if any(p.ndim != 1 or len(p) == 0 or p.dtype not in (torch.int32, torch.int64) for p in prompts):
            raise InputError("prompts as a list of tensors must each be a non-empty 1-D tensor of token ids.")
        lengths = torch.tensor([len(p) for p in prompts])
        tokens = torch.zeros(len(prompts), int(lengths.max()), dtype=torch.long)
        for i, p in enumerate(prompts):
            tokens[i, : len(p)] = p.cpu()
        return tokens, lengths
    if isinstance(prompts, Tensor):
        if prompts.ndim != 2 or prompts.dtype not in (torch.int32, torch.int64) or prompts.shape[1] == 0:
            raise InputError(
                f"prompts as a tensor must be integer token ids [batch pos]; got {tuple(prompts.shape)}."
            )
        return prompts.long(), torch.full((len(prompts),), prompts.shape[1])
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise InputError(
            "prompts must be a list of strings, a [batch pos] tensor of token ids, or a list of 1-D token tensors."
        )
    rows = [model.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if any(len(r) == 0 for r in rows):
        raise InputError("a prompt is empty; every prompt needs at least one token.")
    lengths = torch.tensor([len(r) for r in rows])
    tokens = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r)
    return tokens, lengths


def activations_at(
    model: HookedPhi,
    tokens: Int[Tensor, "batch pos"],
    lengths: Int[Tensor, " batch"],
    hooks: Sequence[str],
    position: int,
    batch_size: int = 64,
) -> dict[str, Float[Tensor, "batch d_probe"]]:
    """Each hook's activation at `position` of each prompt (negative: from its own end), flattened, on
    the CPU.

    One forward per `batch_size` prompts of one length, keeping only the named hooks at that position."""
    hooks = validate_hook_names(model, hooks)
    shortest = int(lengths.min())
    if not -shortest <= position < shortest:
        raise InputError(
            f"position={position} is outside the shortest prompt ({shortest} tokens); use -{shortest}..{shortest - 1}."
        )
    out: dict[str, Tensor] = {}
    for group in length_groups(lengths):
        n = int(lengths[group[0]])
        for rows in group.split(batch_size):
            kept = cache_activations(model, tokens[rows, :n], hooks, positions=[position % n])
            for name in hooks:
                flat = einops.rearrange(kept[name].float(), "batch one ... -> batch (one ...)").cpu()
                if name not in out:
                    out[name] = torch.empty(len(tokens), flat.shape[1])
                out[name][rows] = flat
    return out


def prompt_ids(tokens: Int[Tensor, "batch pos"], lengths: Int[Tensor, " batch"]) -> Int[Tensor, " batch"]:
    """One id per distinct prompt (rows of equal tokens and length share it)."""
    rows = torch.cat([tokens, lengths[:, None].to(tokens)], dim=1)
    return torch.unique(rows, dim=0, return_inverse=True)[1]


def split_groups(
    tokens: Int[Tensor, "batch pos"],
    lengths: Int[Tensor, " batch"],
    groups: Int[Tensor, " batch"] | Sequence[int] | None = None,
) -> Int[Tensor, " batch"]:
    """The groups a held-out split keeps together, numbered 0..: equal prompts always, and prompts of
    the same `groups` id (e.g. a pair's clean and corrupted prompts) when given."""
    ids = prompt_ids(tokens, lengths).tolist()
    if groups is None:
        return torch.tensor(ids)
    groups = torch.as_tensor(groups).long().cpu()
    if groups.shape != (len(tokens),):
        raise InputError(
            f"groups has shape {tuple(groups.shape)}; use one group id per prompt ({len(tokens)})."
        )
    parent = list(range(len(ids)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for key in (ids, groups.tolist()):  # rows sharing a prompt or a group id are joined
        first: dict[int, int] = {}
        for row, k in enumerate(key):
            parent[root(row)] = root(first.setdefault(k, row))
    return torch.unique(torch.tensor([root(i) for i in range(len(ids))]), return_inverse=True)[1]


def _split_by_group(
    group_of: Int[Tensor, " batch"], test_fraction: float, seed: int
) -> tuple[Tensor, Tensor]:
    """Row indices of a seeded train / held-out split in which each group stays on one side."""
    if not 0 < test_fraction < 1:
        raise InputError(
            f"test_fraction={test_fraction} is not allowed; use a number strictly between 0 and 1."
        )
    n_groups = int(group_of.max()) + 1
    n_test = round(test_fraction * n_groups)
    if n_test < 1 or n_groups - n_test < 2:
        raise InputError(
            f"{n_groups} groups of prompts (distinct prompts, kept with their group) cannot be split with "
            f"test_fraction={test_fraction} into at least one held-out and two training groups; use more prompts."
        )
    order = torch.randperm(n_groups, generator=torch.Generator().manual_seed(seed))
    is_test = torch.isin(group_of, order[:n_test])
    return torch.nonzero(~is_test).flatten(), torch.nonzero(is_test).flatten()


def fit_logistic(
    x: Float[Tensor, "batch d_probe"], y: Int[Tensor, " batch"], n_classes: int, l2: float, max_iter: int
) -> tuple[Float[Tensor, "n_classes d_probe"], Float[Tensor, " n_classes"]]:
    """Multinomial logistic regression with an L2 penalty, full-batch L-BFGS on standardised inputs;
    the weights returned act on the raw activations."""
    mean = x.mean(0)
    scale = x.std(0).clamp_min(1e-6)
    z = (x - mean) / scale
    weight = torch.zeros(n_classes, x.shape[1], requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Float[Tensor, ""]:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ weight.T + bias, y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    raw = (weight / scale).detach()
    return raw, (bias - raw @ mean).detach()


def _accuracy(
    weight: Float[Tensor, "n_classes d_probe"],
    bias: Float[Tensor, " n_classes"],
    x: Float[Tensor, "batch d_probe"],
    y: Int[Tensor, " batch"],
) -> float:
    return ((x @ weight.T + bias).argmax(-1) == y).float().mean().item()


@torch.no_grad()
def probe_layers(
    model: HookedPhi,
    prompts: Prompts,
    labels: Int[Tensor, " batch"] | Sequence[int],
    hooks: Sequence[str],
    position: int = -1,
    *,
    test_fraction: float = 0.25,
    l2: float = 1e-3,
    max_iter: int = 200,
    seed: int = 0,
    groups: Int[Tensor, " batch"] | Sequence[int] | None = None,
) -> ProbeResult:
    """A logistic-regression probe per hook at `position` (the last token by default; negative counts
    from each prompt's end) predicting `labels` (integers 0..n_classes-1), with held-out accuracy on a
    seeded by-prompt split and a shuffled-label control per hook.

    `groups`: prompts sharing an id stay on one side of the split (give a pair's two prompts one id:
    near-twins on both sides let a probe score below chance by reading what tells the twins apart)."""
    if isinstance(hooks, str) or not hooks:
        raise InputError(f"hooks={hooks!r} is not allowed; use a non-empty list of hook names.")
    if l2 < 0 or max_iter < 1:
        raise InputError(f"l2={l2} and max_iter={max_iter}: use l2 >= 0 and max_iter >= 1.")
    tokens, lengths = tokenize_prompts(model, prompts)
    labels = torch.as_tensor(labels).long().cpu()
    if labels.shape != (len(tokens),):
        raise InputError(f"labels has shape {tuple(labels.shape)}; use one label per prompt ({len(tokens)}).")
    if labels.min() < 0 or len(labels.unique()) < 2:
        raise InputError("labels must be integers >= 0 with at least two distinct values.")
    n_classes = int(labels.max()) + 1
    train, test = _split_by_group(split_groups(tokens, lengths, groups), test_fraction, seed)
    shuffled = labels[train][torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 1))]
    acts = activations_at(model, tokens, lengths, hooks, position)
    accuracy, train_accuracy, control, weights, biases = [], [], [], [], []
    for name in hooks:
        x = acts[name]
        weight, bias = fit_logistic(x[train], labels[train], n_classes, l2, max_iter)
        accuracy.append(_accuracy(weight, bias, x[test], labels[test]))
        train_accuracy.append(_accuracy(weight, bias, x[train], labels[train]))
        c_weight, c_bias = fit_logistic(x[train], shuffled, n_classes, l2, max_iter)
        control.append(_accuracy(c_weight, c_bias, x[test], labels[test]))
        weights.append(weight)
        biases.append(bias)
    return ProbeResult(
        hooks=tuple(hooks),
        position=position,
        accuracy=torch.tensor(accuracy),
        train_accuracy=torch.tensor(train_accuracy),
        shuffled_accuracy=torch.tensor(control),
        chance=labels[test].bincount().max().item() / len(test),
        weights=tuple(weights),
        biases=tuple(biases),
        n_train=len(train),
        n_test=len(test),
    )
