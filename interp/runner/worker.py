"""The worker side of an experiment: load the model once, then compute units by id.

A unit is (analysis label, batch index) and is a pure function of the config, so any process
holding a `UnitWorker` for the same config computes the same values: the local backend runs one
in-process, the Ray backend one per actor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interp.base.console import warn
from interp.base.errors import InputError
from interp.data.metrics import MetricKind
from interp.data.prompts import PromptPairs
from interp.data.tokens import str_tokens
from interp.methods.contrastive import check_inputs, contrast
from interp.model.loading import HookedPhi
from interp.runner.config import ConfigError, ExperimentConfig
from interp.runner.kinds import spec_for
from interp.runner.labels import BASELINE
from interp.runner.options import AnalysisOptions
from interp.runner.registry import Computed, UnitContext


@dataclass
class Plan:
    """The units of a run and the prompt indices of each batch."""

    units: list[tuple[str, int | None]]  # (label, batch index or None for whole-run units)
    batches: list[list[int]]


def plan_units(config: ExperimentConfig, n_pairs: int) -> Plan:
    """One unit per batch for per-prompt kinds (and the baseline), one for whole-run kinds."""
    batches = [
        list(range(i, min(i + config.batch_size, n_pairs))) for i in range(0, n_pairs, config.batch_size)
    ]
    units: list[tuple[str, int | None]] = [(BASELINE, b) for b in range(len(batches))]
    for analysis in config.analysis:
        if spec_for(analysis.kind).per_prompt:
            units += [(analysis.label, b) for b in range(len(batches))]
        else:
            units.append((analysis.label, None))
    return Plan(units, batches)


def check_before_compute(config: ExperimentConfig, model: HookedPhi, pairs: PromptPairs) -> None:
    """What only the loaded model can tell, checked before any unit runs: prompt lengths against the
    model's context, token ids against its vocabulary, and every analysis's options (heads, layers)
    against the model, by its kind's own check."""
    check_inputs(model, pairs, "an experiment")
    for analysis in config.analysis:
        try:
            spec_for(analysis.kind).check(analysis, model)
        except InputError as error:
            raise ConfigError(f"analysis {analysis.label!r} ({analysis.kind}): {error}") from None


class UnitWorker:
    """Holds the model and the prompt pairs of one config; `compute(label, batch)` runs a unit."""

    def __init__(self, config: ExperimentConfig):
        from interp.data.tasks import build_pairs
        from interp.model.loading import load_model

        self.config = config
        torch.manual_seed(config.seed)
        self.model = load_model(
            config.model.source,
            device=config.model.device,
            dtype=config.model.dtype,
            weights=config.model.weights,
        )
        self.pairs = build_pairs(config.task, self.model, config.seed)
        check_before_compute(config, self.model, self.pairs)
        self.plan = plan_units(config, len(self.pairs))
        self.by_label = {a.label: a for a in config.analysis}
        self.messages: list[str] = []

    def n_pairs(self) -> int:
        return len(self.pairs)

    def compute(self, label: str, batch: int | None) -> Computed:
        """Compute unit (label, batch): its values, retrying with half batches on CUDA out-of-memory."""
        subset = self.pairs.select(self.plan.batches[batch]) if batch is not None else self.pairs
        if label == BASELINE:
            return _baseline(self.model, subset, self.config.task.metric)
        return _compute_with_retry(
            self.by_label[label], self.model, subset, self.config, self.messages.append
        )

    def describe(self, analyses: list[dict]) -> dict:
        """Model, task and example facts for results.json (needs the analyses to pick heads to show)."""
        info = self.model.interp_info
        example = self.pairs.select([0])
        tokenizer = self.model.tokenizer
        return {
            "model": {
                "source": info.source,
                "n_layers": info.n_layers,
                "n_heads": info.n_heads,
                "d_model": info.d_model,
                "dtype": info.dtype,
                "device": info.device,
                "weights": info.weights,
            },
            "task": {
                "name": self.config.task.name,
                "n_pairs": len(self.pairs),
                "same_length": self.pairs.same_length,
                "example": {
                    "clean_tokens": str_tokens(tokenizer, example.clean_tokens[0]),
                    "corrupted_tokens": str_tokens(tokenizer, example.corrupted_tokens[0]),
                    "answer": str_tokens(tokenizer, example.answer[:1])[0],
                    "wrong": str_tokens(tokenizer, example.wrong[:1])[0],
                },
            },
            "attention_example": _attention_example(self.model, example, analyses),
        }


def compute_unit(
    analysis: AnalysisOptions, model: HookedPhi, pairs: PromptPairs, config: ExperimentConfig
) -> Computed:
    """One analysis on one batch, through its registry entry; its dims are checked against the entry's."""
    spec = spec_for(analysis.kind)
    ctx = UnitContext(config.task.metric, config.seed, config.memory_budget_mb * 1024**2)
    computed = spec.compute(analysis, model, pairs, ctx)
    expected = spec.dims(analysis)
    if tuple(computed.dims) != tuple(expected):
        raise RuntimeError(
            f"{analysis.kind} computed dims {computed.dims}, its registry entry says {expected}"
        )
    return computed


def _compute_with_retry(
    analysis: AnalysisOptions, model: HookedPhi, pairs: PromptPairs, config: ExperimentConfig, log
) -> Computed:
    """On CUDA out-of-memory, halve the batch and retry (per-prompt values concatenate)."""
    try:
        return compute_unit(analysis, model, pairs, config)
    except torch.cuda.OutOfMemoryError:
        if len(pairs) == 1 or not spec_for(analysis.kind).per_prompt:
            raise
        torch.cuda.empty_cache()
        half = len(pairs) // 2
        message = f"{analysis.label}: CUDA out of memory with {len(pairs)} prompts; retrying as {half} + {len(pairs) - half}"
        warn(message)
        log(message)
        parts = [
            _compute_with_retry(analysis, model, pairs.select(list(idx)), config, log)
            for idx in (range(half), range(half, len(pairs)))
        ]
        return Computed(parts[0].dims, torch.cat([p.values for p in parts], dim=-1), parts[0].labels)


def _baseline(model: HookedPhi, pairs: PromptPairs, metric: MetricKind) -> Computed:
    """Per-prompt clean and corrupted metric, from the contrastive core every method uses: [2, batch]."""
    core = contrast(model, pairs, metric, keep="logits")
    return Computed(("which",), torch.stack([core.clean_values, core.corrupted_values]))


# every head's pattern on the example prompt goes into results.json up to this many numbers (Phi-2: 1,024
# heads x 40 tokens^2 = 1.6M, ~10 MB of JSON); beyond it, only the top heads' patterns
ALL_PATTERNS_LIMIT = 2_000_000


def _attention_example(
    model: HookedPhi, example: PromptPairs, analyses: list[dict], n_heads: int = 4
) -> dict:
    """Attention patterns on the first clean prompt: the heads the first head analysis ranks highest
    (the report's attention section) and, when small enough, every head (the report's explorer)."""
    from interp.methods.head_scores import top_heads
    from interp.model.cache import cache_activations

    grid = next((a for a in analyses if a["dims"] == ["layer", "head"]), None)
    if grid is None:
        return {}
    values = torch.tensor(grid["values"]).abs()
    heads = [(layer, head) for layer, head, _ in top_heads(values, n_heads)]
    length = int(example.lengths[0])
    tokens = example.clean_tokens[:, :length]
    every = model.cfg.n_layers * model.cfg.n_heads * length**2 <= ALL_PATTERNS_LIMIT
    layers = range(model.cfg.n_layers) if every else sorted({layer for layer, _ in heads})
    cache = cache_activations(model, tokens, [f"blocks.{layer}.attn.hook_pattern" for layer in layers])

    def pattern(layer: int) -> list:  # [head][dest][src]
        return cache[f"blocks.{layer}.attn.hook_pattern"][0].float().tolist()

    out = {
        "ranked_by": grid["name"],
        "tokens": str_tokens(model.tokenizer, tokens[0]),
        "heads": [{"layer": layer, "head": head, "pattern": pattern(layer)[head]} for layer, head in heads],
    }
    if every:
        out["all"] = [
            [[[round(w, 4) for w in row] for row in head] for head in pattern(layer)] for layer in layers
        ]
    return out
