"""The contrastive core that every method on prompt pairs stands on.

Methods that compare a clean and a corrupted prompt share one set-up, written once here:

1. group the pairs by token length (each group runs unpadded);
2. run the clean prompts (the model does the task) and the corrupted ones (it does not) through the
   functional forward (`interp.engine.forward`), keeping what methods patch from;
3. read every prompt's final-position logits and resolve the metric once (KL needs the clean run's
   distribution);
4. take the clean and corrupted metric values as the baselines every effect is measured against;
5. decide which run is the *base* (the one that is intervened on) and which is the *source* (where
   patched values come from). This module is the only place that makes that decision:

   - `direction="denoising"`: base = corrupted, source = clean. An effect means the activation is
     enough to bring the clean behaviour back ("is it sufficient?").
   - `direction="noising"`: base = clean, source = corrupted. An effect means the behaviour breaks
     without it ("is it necessary?"). Ablations are noising too: the base is the clean run.

`GroupStream` is that set-up one length group at a time, run with a method's own forward (edge
attribution runs `sender_run`, with autograd on EAP's base run); `contrast` is the stream kept whole,
with the functional forward's `RunCache`s.

User hooks on the model are refused: every method computes from the weights (or adds its own hooks),
so an attached hook would be silently ignored or silently mixed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.data.metrics import Metric, MetricKind, resolve_metric
from interp.data.prompts import PromptPairs
from interp.engine.forward import PhiWeights, RunCache, run_final_logits, run_with_cache
from interp.methods.result import EffectResult
from interp.model.hooks import refuse_user_hooks
from interp.model.loading import HookedPhi

Direction = Literal["denoising", "noising"]
DIRECTIONS: tuple[Direction, ...] = ("denoising", "noising")
Keep = Literal["all", "logits"]
T = TypeVar("T")
R = TypeVar(
    "R"
)  # what a run keeps: a RunCache, or a method's own run  # tokens, runs, values: anything that comes as a clean and a corrupted version


def check_inputs(model: HookedPhi, pairs: PromptPairs, what: str) -> None:
    """What every method on prompt pairs checks first: no user hooks, pairs valid for this model."""
    refuse_user_hooks(model, what)
    pairs.validate(model.cfg.d_vocab, getattr(model.cfg, "n_ctx", None))


def check_direction(direction: str) -> Direction:
    """`direction` itself if it is 'denoising' or 'noising', else a ValueError naming both."""
    if direction not in DIRECTIONS:
        raise InputError(f"direction={direction!r} is not allowed; use 'denoising' or 'noising'.")
    return direction  # type: ignore[return-value]


def base_and_source(clean: T, corrupted: T, direction: Direction) -> tuple[T, T]:
    """(base, source) of any clean/corrupted pair of things, by direction (see the module docstring)."""
    check_direction(direction)
    return (corrupted, clean) if direction == "denoising" else (clean, corrupted)


def clean_and_corrupted(base: T, source: T, direction: Direction) -> tuple[T, T]:
    """The inverse of `base_and_source`: which of a base and a source thing is the clean one."""
    check_direction(direction)
    return (source, base) if direction == "denoising" else (base, source)


@dataclass
class LengthGroup(Generic[R]):
    """The prompts of one token length: their dataset positions and both runs (`RunCache`s from
    `contrast`, None with keep='logits'; a method's own runs from a `GroupStream`)."""

    index: Int[Tensor, " batch"]
    clean: R | None
    corrupted: R | None


@dataclass
class Contrast:
    """Clean and corrupted runs of a dataset, its metric, its baselines and the direction of intervention."""

    weights: PhiWeights
    pairs: PromptPairs
    groups: list[LengthGroup]
    direction: Direction
    metric: Metric
    clean_logits: Float[Tensor, "batch d_vocab"]
    corrupted_logits: Float[Tensor, "batch d_vocab"]

    def base(self, group: LengthGroup) -> RunCache:
        """The run that is intervened on: corrupted when denoising, clean when noising."""
        return base_and_source(group.clean, group.corrupted, self.direction)[0]

    def source(self, group: LengthGroup) -> RunCache:
        """The run patched values come from: clean when denoising, corrupted when noising."""
        return base_and_source(group.clean, group.corrupted, self.direction)[1]

    def first_difference(self, group: LengthGroup) -> int:
        """The first position where any prompt of `group` has different clean and corrupted tokens: with
        causal attention both runs are identical before it, so no intervention can change anything there
        (the last position if the runs never differ)."""
        tokens = self.pairs.select(group.index)
        differs = (tokens.clean_tokens != tokens.corrupted_tokens).any(0)
        return int(differs.nonzero()[0, 0]) if differs.any() else tokens.clean_tokens.shape[1] - 1

    def measure(
        self, final_logits: Float[Tensor, "batch d_vocab"], index: Int[Tensor, " batch"]
    ) -> Float[Tensor, " batch"]:
        """The metric of prompts `index` (dataset positions) from their final-position logits."""
        return self.metric(final_logits, index)

    @property
    def everyone(self) -> Int[Tensor, " batch"]:
        return torch.arange(len(self.pairs))

    @property
    def clean_values(self) -> Float[Tensor, " batch"]:
        return self.measure(self.clean_logits, self.everyone).cpu()

    @property
    def corrupted_values(self) -> Float[Tensor, " batch"]:
        return self.measure(self.corrupted_logits, self.everyone).cpu()

    @property
    def base_values(self) -> Float[Tensor, " batch"]:
        return base_and_source(self.clean_values, self.corrupted_values, self.direction)[0]

    @property
    def clean_value(self) -> float:
        return self.clean_values.mean().item()

    @property
    def corrupted_value(self) -> float:
        return self.corrupted_values.mean().item()

    def result(
        self,
        site: str,
        dims: tuple[str, ...],
        values: Float[Tensor, "*dims batch"],
        *,
        measures: Literal["metric", "change"],
        reduce: Literal["mean", "none"] = "mean",
        extra: dict | None = None,
    ):
        """Wrap per-prompt `values` (`*dims batch`) in the one result type, with this run's baselines."""
        if reduce not in ("mean", "none"):
            raise InputError(f"reduce={reduce!r} is not allowed; use 'mean' or 'none'.")
        values = values.float().cpu()
        return EffectResult(
            site=site,
            dims=dims,
            values=values.mean(-1) if reduce == "mean" else values,
            clean=self.clean_value,
            corrupted=self.corrupted_value,
            metric=self.metric.kind,
            direction=self.direction,
            measures=measures,
            per_prompt=reduce == "none",
            extra=extra or {},
        )


RunFn = Callable[[PhiWeights, Int[Tensor, "batch pos"], bool], tuple[Any, Float[Tensor, "batch d_vocab"]]]
"""How a method runs one side of a length group: (weights, tokens, is_base) -> (what it keeps, the final
position's logits, detached)."""


class GroupStream:
    """The contrastive set-up one length group at a time, for methods that run their own forward.

    Iterating yields each group (`LengthGroup` holding what `run` kept for its clean and its corrupted
    prompts) after both runs, so a method works on it and lets it go before the next group runs (memory
    of one group at a time, as `contrast` cannot give). `metric()` is the metric resolved from the clean
    logits of the groups run so far (a group's rows are right once it has run: the KL metric reads only
    the rows it measures); `finish()` after the last group is the `Contrast` with every baseline.
    """

    def __init__(
        self,
        model: HookedPhi,
        pairs: PromptPairs,
        metric: MetricKind | Metric,
        direction: Direction,
        run: RunFn,
        what: str,
    ):
        check_inputs(model, pairs, what)
        self.direction = check_direction(direction)
        self.weights = PhiWeights.from_model(model)
        self.pairs, self._metric, self._run = pairs, metric, run
        self.device = model.cfg.device
        n, d_vocab = len(pairs), self.weights.W_U.shape[0]
        self.clean_logits = torch.zeros(n, d_vocab, device=self.device)
        self.corrupted_logits = torch.zeros(n, d_vocab, device=self.device)
        self.groups: list[LengthGroup] = []

    def __iter__(self) -> Iterator[LengthGroup]:
        for index in self.pairs.length_groups():
            group = self.pairs.select(index)
            kept = {}
            for which, tokens in (("clean", group.clean_tokens), ("corrupted", group.corrupted_tokens)):
                is_base = (which == "corrupted") == (self.direction == "denoising")
                kept[which], final = self._run(self.weights, tokens.to(self.device), is_base)
                logits = self.clean_logits if which == "clean" else self.corrupted_logits
                logits[index.to(self.device)] = final.detach().float()
            self.groups.append(LengthGroup(index, None, None))
            yield LengthGroup(index, kept["clean"], kept["corrupted"])

    def metric(self) -> Metric:
        return resolve_metric(self._metric, self.pairs, self.clean_logits)

    def base(self, group: LengthGroup):
        return base_and_source(group.clean, group.corrupted, self.direction)[0]

    def source(self, group: LengthGroup):
        return base_and_source(group.clean, group.corrupted, self.direction)[1]

    def finish(self, groups: list[LengthGroup] | None = None) -> Contrast:
        """The `Contrast` of every prompt (its `groups` the ones given, else index-only groups)."""
        return Contrast(
            self.weights,
            self.pairs,
            self.groups if groups is None else groups,
            self.direction,
            self.metric(),
            self.clean_logits,
            self.corrupted_logits,
        )


def contrast(
    model: HookedPhi,
    pairs: PromptPairs,
    metric: MetricKind | Metric = "logit_diff",
    *,
    direction: Direction = "denoising",
    keep: Keep = "all",
    grad_base: bool = False,
) -> Contrast:
    """Run clean and corrupted prompts per length group and resolve the metric and baselines.

    `keep="all"` keeps every activation methods patch from (`RunCache`); `"logits"` only the final
    logits (methods that intervene through hooks). `grad_base` builds the base run with autograd
    (its activations are graph nodes; attribution patching differentiates through them).
    """
    if keep not in ("all", "logits"):
        raise InputError(f"keep={keep!r} is not allowed; use 'all' or 'logits'.")

    def run(
        w: PhiWeights, tokens: Int[Tensor, "batch pos"], is_base: bool
    ) -> tuple[RunCache | None, Float[Tensor, "batch d_vocab"]]:
        if keep == "logits":
            return None, run_final_logits(w, tokens)
        cache = run_with_cache(w, tokens, grad=grad_base and is_base)
        return cache, cache.final_logits.detach()

    stream = GroupStream(model, pairs, metric, direction, run, "this method")
    return stream.finish(list(stream))
