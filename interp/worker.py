"""The worker side of an experiment: load the model once, then compute units by id.

A unit is (analysis label, batch index) and is a pure function of the config, so any process
holding a `UnitWorker` for the same config computes the same values: the local backend runs one
in-process, the Ray backend one per actor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interp.analyses import PER_PROMPT, Computed, compute
from interp.config import AnalysisConfig, ExperimentConfig
from interp.console import warn
from interp.metrics import make_metric
from interp.prompts import PromptPairs

BASELINE = "_baseline"


@dataclass
class Plan:
    units: list[tuple[str, int | None]]  # (label, batch index or None for whole-run units)
    batches: list[list[int]]


def plan_units(config: ExperimentConfig, n_pairs: int) -> Plan:
    batches = [
        list(range(i, min(i + config.batch_size, n_pairs))) for i in range(0, n_pairs, config.batch_size)
    ]
    units: list[tuple[str, int | None]] = [(BASELINE, b) for b in range(len(batches))]
    for analysis in config.analysis:
        if analysis.kind in PER_PROMPT:
            units += [(analysis.label, b) for b in range(len(batches))]
        else:
            units.append((analysis.label, None))
    return Plan(units, batches)


class UnitWorker:
    """Holds the model and the prompt pairs of one config; `compute(label, batch)` runs a unit."""

    def __init__(self, config: ExperimentConfig):
        from interp.model import load_model
        from interp.tasks import build_pairs

        self.config = config
        torch.manual_seed(config.seed)
        self.model = load_model(
            config.model.source,
            device=config.model.device,
            dtype=config.model.dtype,
            weights=config.model.weights,
        )
        self.pairs = build_pairs(config.task, self.model, config.seed)
        self.plan = plan_units(config, len(self.pairs))
        self.by_label = {a.label: a for a in config.analysis}
        self.messages: list[str] = []

    def n_pairs(self) -> int:
        return len(self.pairs)

    def compute(self, label: str, batch: int | None) -> Computed:
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
        decode = self.model.tokenizer.decode
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
                    "clean_tokens": [decode([int(t)]) for t in example.clean_tokens[0]],
                    "corrupted_tokens": [decode([int(t)]) for t in example.corrupted_tokens[0]],
                    "answer": decode([int(example.answer[0])]),
                    "wrong": decode([int(example.wrong[0])]),
                },
            },
            "attention_example": _attention_example(self.model, example, analyses),
        }


def _compute_with_retry(analysis: AnalysisConfig, model, pairs: PromptPairs, config, log) -> Computed:
    """On CUDA out-of-memory, halve the batch and retry (per-prompt values concatenate)."""
    try:
        return compute(analysis, model, pairs, config)
    except torch.cuda.OutOfMemoryError:
        if len(pairs) == 1 or analysis.kind not in PER_PROMPT:
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


@torch.no_grad()
def _baseline(model, pairs: PromptPairs, metric: str) -> Computed:
    """Per-prompt clean and corrupted metric: values [2, batch]."""
    device = model.cfg.device
    rows = torch.arange(len(pairs))
    final = {}
    for which in ("clean", "corrupted"):
        logits = model(getattr(pairs, f"{which}_tokens").to(device)).float().cpu()
        final[which] = logits[rows, pairs.final_pos]
    fn = make_metric(metric, pairs.answer, pairs.wrong, final["clean"])
    return Computed(("which",), torch.stack([fn(final["clean"], rows), fn(final["corrupted"], rows)]))


def _attention_example(model, example: PromptPairs, analyses: list[dict], n_heads: int = 4) -> dict:
    """Attention patterns on the first clean prompt for the heads the first head analysis ranks highest."""
    from interp.cache import cache_activations
    from interp.heads import top_heads

    grid = next((a for a in analyses if a["dims"] == ["layer", "head"]), None)
    if grid is None:
        return {}
    values = torch.tensor(grid["values"]).abs()
    heads = [(layer, head) for layer, head, _ in top_heads(values, n_heads)]
    length = int(example.lengths[0])
    tokens = example.clean_tokens[:, :length]
    names = sorted({f"blocks.{layer}.attn.hook_pattern" for layer, _ in heads})
    cache = cache_activations(model, tokens, names)
    return {
        "ranked_by": grid["name"],
        "tokens": [model.tokenizer.decode([int(t)]) for t in tokens[0]],
        "heads": [
            {
                "layer": layer,
                "head": head,
                "pattern": cache[f"blocks.{layer}.attn.hook_pattern"][0, head].float().tolist(),
            }
            for layer, head in heads
        ],
    }
