"""Feature statistics over a corpus, in one streaming pass with bounded memory.

For each chosen latent of a dictionary (SAE or transcoder: both are read at their input hook, so a
transcoder's latents are what it computes from `hook_name`), over every kept token of the corpus:

- `density`: the fraction of tokens on which the latent is active (activation > 0), Neuronpedia's
  `frac_nonzero`; `max_act`, `mean_act` (over all tokens) and `mean_active` (over its active tokens);
- a histogram of its non-zero activations with `bins` equal bins on (0, R] (bin b holds
  (b, b + 1] * R / bins), where R is the smallest power of two at least the largest activation
  seen. When a batch exceeds R, R doubles and adjacent bins merge pairwise, so the counts are exact
  (the same as a histogram of every activation on the final bins, whatever the batching), not
  re-binned; the empty bins above the maximum are left out, so between bins / 2 and bins remain;
- the top `n_contexts` contexts: per prompt row, the position where the latent is largest; across
  rows the `n_contexts` largest (a top-k merge per batch), each kept as a window of token ids
  (`context_before` tokens before that position, `context_after` after, within the row) with the
  latent's activation on every token of the window, for highlighting. One context per row, so the
  top contexts are different prompts; ties are broken by the earlier row.

Memory is bounded by the number of chosen latents, not by the corpus: per latent `n_contexts`
windows and `bins` counts, plus one batch's activations (encoded `row_chunk` rows at a time).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.dictionaries.base import Dictionary
from interp.dictionaries.streaming import model_activations, token_batches
from interp.model.loading import HookedPhi

PAD = -1  # the token id of window positions outside the row


@dataclass
class FeatureStats:
    """What `feature_stats` measured, per chosen latent (see the module docstring)."""

    features: Int[Tensor, " feature"]
    n_tokens: int
    density: Float[Tensor, " feature"]
    max_act: Float[Tensor, " feature"]
    mean_act: Float[Tensor, " feature"]
    mean_active: Float[Tensor, " feature"]
    histogram_counts: Int[Tensor, "feature bin"]  # counts of non-zero activations per bin
    histogram_range: Float[Tensor, " feature"]  # R: bin b holds (b, b + 1] * R / bins (0: never fired)
    context_values: Float[Tensor, "feature context"]  # each context's largest activation (-inf: none)
    context_rows: Int[Tensor, "feature context"]  # the corpus row (counted over the stream; -1: none)
    context_tokens: Int[Tensor, "feature context window"]  # token ids (PAD outside the row)
    context_acts: Float[Tensor, "feature context window"]  # the latent's activation on each token
    context_max_index: Int[Tensor, "feature context"]  # where in the window the largest one is

    @property
    def n_features(self) -> int:
        return int(self.features.numel())

    def index_of(self, feature: int) -> int:
        """The row of latent `feature` in these statistics; an error if it was not measured."""
        hits = (self.features == feature).nonzero()
        if hits.numel() == 0:
            raise InputError(f"latent {feature} was not measured; these statistics hold {self.n_features}.")
        return int(hits[0, 0])

    def histogram(self, feature: int) -> tuple[list[int], list[float]]:
        """Latent `feature`'s histogram: counts and bin edges, the empty bins above its maximum left out."""
        row = self.index_of(feature)
        counts = self.histogram_counts[row]
        bins, top = counts.numel(), float(self.histogram_range[row])
        if top <= 0:
            return [], []
        nonzero = counts.nonzero()
        keep = int(nonzero[-1, 0]) + 1 if nonzero.numel() else 0
        edges = [top * b / bins for b in range(keep + 1)]
        return counts[:keep].tolist(), edges

    def top(self, by: str = "density", n: int | None = None) -> list[int]:
        """Latent indices ranked by `density`, `max_act` or `mean_act` (largest first), at most `n`."""
        if by not in ("density", "max_act", "mean_act"):
            raise InputError(f"by={by!r} is not allowed; use 'density', 'max_act' or 'mean_act'.")
        order = torch.argsort(getattr(self, by), descending=True, stable=True)
        return self.features[order[:n]].tolist()


class _Stream:
    """The running sums, histograms and top-k windows of a `feature_stats` pass."""

    def __init__(self, features: Tensor, n_contexts: int, bins: int, before: int, after: int):
        n = features.numel()
        self.features, self.bins, self.before, self.after = features, bins, before, after
        self.width = before + 1 + after
        self.n_tokens, self.n_rows = 0, 0
        self.active = torch.zeros(n, dtype=torch.float64)
        self.total = torch.zeros(n, dtype=torch.float64)
        self.max_act = torch.zeros(n)
        self.counts = torch.zeros(n, bins, dtype=torch.long)
        self.range = torch.zeros(n)
        self.values = torch.full((n, n_contexts), -math.inf)
        self.rows = torch.full((n, n_contexts), -1, dtype=torch.long)
        self.tokens = torch.full((n, n_contexts, self.width), PAD, dtype=torch.long)
        self.acts = torch.zeros(n, n_contexts, self.width)
        self.max_index = torch.zeros(n, n_contexts, dtype=torch.long)

    def _grow_ranges(self, batch_max: Tensor) -> None:
        """Double each latent's range until it holds `batch_max`, merging bins pairwise (exact: new bin
        j covers old bins 2j and 2j + 1)."""
        if not bool(torch.isfinite(batch_max).all()):
            raise InputError(
                "the dictionary's activations hold NaN or inf; check its weights and the model dtype."
            )
        fresh = (self.range == 0) & (batch_max > 0)
        self.range[fresh] = torch.exp2(torch.ceil(torch.log2(batch_max[fresh])))
        over = self._bin_index(batch_max) >= self.bins
        while bool(over.any()):
            counts = self.counts[over]
            if self.bins % 2:
                counts = torch.nn.functional.pad(counts, (0, 1))
            merged = einops.reduce(counts, "f (b two) -> f b", "sum", two=2)
            self.counts[over] = torch.nn.functional.pad(merged, (0, self.bins - merged.shape[1]))
            self.range[over] = self.range[over] * 2
            over = self._bin_index(batch_max) >= self.bins

    def _bin_index(self, values: Tensor) -> Tensor:
        """Bin b holds (b, b + 1] * R / bins: ceil(v * bins / R) - 1. Doubling R maps bin i to i // 2
        exactly, in floating point too (a power of two scales without rounding)."""
        scale = torch.where(
            self.range > 0, self.bins / self.range.clamp_min(1e-30), torch.zeros_like(self.range)
        )
        return torch.ceil(values * scale).long() - 1

    def add(self, tokens: Tensor, keep: Tensor, acts: Tensor) -> None:
        """One chunk of rows: token ids [b, p], kept positions [b, p], activations [b, p, feature]."""
        acts = acts * keep[..., None]
        flat = acts[keep]  # [token, feature]
        self.n_tokens += flat.shape[0]
        on = flat > 0
        self.active += on.sum(0).double()
        self.total += flat.double().sum(0)
        batch_max = flat.max(0).values if flat.shape[0] else torch.zeros_like(self.max_act)
        self.max_act = torch.maximum(self.max_act, batch_max.clamp_min(0))
        self._grow_ranges(batch_max)
        fired = self.range > 0
        if bool(fired.any()):
            index = self._bin_index(flat)  # [token, feature]; in range wherever flat > 0
            feature_ids = torch.arange(flat.shape[1]).expand_as(index)
            self.counts.view(-1).index_put_(
                (feature_ids[on] * self.bins + index[on],), torch.ones(int(on.sum()), dtype=torch.long),
                accumulate=True,
            )  # fmt: skip
        self._merge_contexts(tokens, keep, acts)

    def _merge_contexts(self, tokens: Tensor, keep: Tensor, acts: Tensor) -> None:
        n_rows, n_pos, _ = acts.shape
        masked = acts.masked_fill(~keep[..., None], -math.inf)
        row_max, row_pos = masked.max(dim=1)  # [row, feature]
        k = self.values.shape[1]
        candidates = torch.cat([self.values, einops.rearrange(row_max, "r f -> f r")], dim=1)
        row_ids = torch.cat(
            [self.rows, (self.n_rows + torch.arange(n_rows)).expand(self.features.numel(), n_rows)], dim=1
        )
        # stable: among equal values the earlier row wins (running entries come first)
        order = torch.sort(candidates, dim=1, descending=True, stable=True).indices[:, :k]
        new_values = candidates.gather(1, order)
        new_rows = row_ids.gather(1, order)
        is_new = (order >= k) & torch.isfinite(new_values) & (new_values > 0)
        new_tokens = self.tokens.gather(1, order.clamp(max=k - 1)[..., None].expand(-1, -1, self.width))
        new_acts = self.acts.gather(1, order.clamp(max=k - 1)[..., None].expand(-1, -1, self.width))
        new_index = self.max_index.gather(1, order.clamp(max=k - 1))
        f_idx, c_idx = is_new.nonzero(as_tuple=True)
        if f_idx.numel():
            row = order[f_idx, c_idx] - k
            pos = row_pos[row, f_idx]
            offsets = torch.arange(-self.before, self.after + 1)
            where = pos[:, None] + offsets  # [hit, window]
            inside = (where >= 0) & (where < n_pos)
            clipped = where.clamp(0, n_pos - 1)
            inside &= keep[row[:, None], clipped]
            window_tokens = tokens[row[:, None], clipped].masked_fill(~inside, PAD)
            window_acts = acts[row[:, None], clipped, f_idx[:, None]].masked_fill(~inside, 0.0)
            new_tokens[f_idx, c_idx] = window_tokens
            new_acts[f_idx, c_idx] = window_acts
            new_index[f_idx, c_idx] = self.before
        dropped = ~is_new & (order >= k)  # a row that did not fire: no context
        new_values = new_values.masked_fill(dropped | ~(new_values > 0), -math.inf)
        new_rows = new_rows.masked_fill(~torch.isfinite(new_values), -1)
        self.values, self.rows = new_values, new_rows
        self.tokens, self.acts, self.max_index = new_tokens, new_acts, new_index
        self.n_rows += n_rows

    def result(self) -> FeatureStats:
        n = max(self.n_tokens, 1)
        empty = ~torch.isfinite(self.values)
        return FeatureStats(
            features=self.features,
            n_tokens=self.n_tokens,
            density=(self.active / n).float(),
            max_act=self.max_act,
            mean_act=(self.total / n).float(),
            mean_active=(self.total / self.active.clamp_min(1)).float(),
            histogram_counts=self.counts,
            histogram_range=self.range,
            context_values=self.values,
            context_rows=self.rows,
            context_tokens=self.tokens.masked_fill(empty[..., None], PAD),
            context_acts=self.acts.masked_fill(empty[..., None], 0.0),
            context_max_index=self.max_index,
        )


def _features(dictionary: Dictionary, features: Sequence[int] | None) -> Tensor:
    if features is None:
        return torch.arange(dictionary.d_sae)
    chosen = [int(f) for f in features]
    bad = [f for f in chosen if not 0 <= f < dictionary.d_sae]
    if bad or not chosen:
        raise InputError(
            f"features {bad or '[]'} are not latents of this dictionary (0 .. {dictionary.d_sae - 1}); "
            "give at least one, or None for all."
        )
    if len(set(chosen)) != len(chosen):
        raise InputError(f"features {chosen} name a latent twice; give each once.")
    return torch.tensor(chosen)


def _check_options(n_contexts: int, bins: int, before: int, after: int, row_chunk: int) -> None:
    for name, value, low in (
        ("n_contexts", n_contexts, 1),
        ("bins", bins, 1),
        ("context_before", before, 0),
        ("context_after", after, 0),
        ("row_chunk", row_chunk, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"{name}={value!r} is not allowed; it must be an integer >= {low}.")


@torch.no_grad()
def feature_stats(
    model: HookedPhi,
    dictionary: Dictionary,
    tokens: Int[Tensor, "batch pos"] | Iterable,
    *,
    features: Sequence[int] | None = None,
    n_contexts: int = 10,
    bins: int = 50,
    context_before: int = 16,
    context_after: int = 4,
    model_batch: int = 32,
    row_chunk: int = 64,
) -> FeatureStats:
    """Statistics of `features` (default: every latent) of `dictionary` over a corpus.

    Args:
        model: from `load_model`; the activations at `dictionary.hook_name` are encoded.
        tokens: a `[batch, pos]` tensor (every position kept), or an iterator of token batches or of
            `(tokens, mask)` pairs whose mask keeps the real positions (padding left out).
        n_contexts: top contexts kept per latent; `context_before` / `context_after`: tokens kept
            around each context's largest activation.
        bins: histogram bins; `model_batch`: prompt rows per forward; `row_chunk`: rows encoded at
            once (bounds the `[rows, pos, d_sae]` activations in memory).
    """
    if dictionary.hook_name is None:
        raise InputError(
            f"{dictionary!r} has no hook_name: say which hook it reads (load_dictionary's hook_name=)."
        )
    _check_options(n_contexts, bins, context_before, context_after, row_chunk)
    chosen = _features(dictionary, features)
    stream = _Stream(chosen, n_contexts, bins, context_before, context_after)
    every = torch.equal(chosen, torch.arange(dictionary.d_sae))  # no column selection needed
    device = dictionary.W_enc.device
    batches, _ = token_batches(tokens, model_batch)
    dictionary.eval()
    for batch_tokens, mask in batches:
        keep = torch.ones_like(batch_tokens, dtype=torch.bool) if mask is None else mask.bool()
        if keep.shape != batch_tokens.shape:
            raise InputError(
                f"mask has shape {tuple(keep.shape)}; it must match tokens {tuple(batch_tokens.shape)}."
            )
        rows = model_activations(model, batch_tokens, [dictionary.hook_name])[dictionary.hook_name]
        x = einops.rearrange(rows, "(b p) d -> b p d", b=batch_tokens.shape[0])
        for start in range(0, x.shape[0], row_chunk):
            part = slice(start, start + row_chunk)
            acts = dictionary.encode(x[part].to(device))
            if not every:
                acts = acts[..., chosen.to(device)]
            acts = acts.float().cpu()
            stream.add(batch_tokens[part].cpu(), keep[part].cpu(), acts)
    if stream.n_tokens == 0:
        raise InputError("No tokens to measure: the corpus is empty or every position is masked out.")
    return stream.result()


def feature_stats_from_acts(
    tokens: Int[Tensor, "batch pos"],
    acts: Float[Tensor, "batch pos feature"],
    *,
    mask: Bool[Tensor, "batch pos"] | None = None,
    features: Sequence[int] | None = None,
    n_contexts: int = 10,
    bins: int = 50,
    context_before: int = 16,
    context_after: int = 4,
    row_chunk: int = 64,
) -> FeatureStats:
    """The same statistics from latent activations already computed (`features`: their latent ids)."""
    _check_options(n_contexts, bins, context_before, context_after, row_chunk)
    if acts.ndim != 3 or acts.shape[:2] != tokens.shape:
        raise InputError(
            f"acts {tuple(acts.shape)} must be [batch, pos, feature] over tokens {tuple(tokens.shape)}."
        )
    ids = torch.arange(acts.shape[-1]) if features is None else torch.tensor([int(f) for f in features])
    if ids.numel() != acts.shape[-1]:
        raise InputError(f"{ids.numel()} feature ids for {acts.shape[-1]} activation columns.")
    keep = torch.ones_like(tokens, dtype=torch.bool) if mask is None else mask.bool()
    stream = _Stream(ids, n_contexts, bins, context_before, context_after)
    for start in range(0, tokens.shape[0], row_chunk):
        part = slice(start, start + row_chunk)
        stream.add(tokens[part], keep[part], acts[part].float())
    return stream.result()
