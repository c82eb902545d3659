"""Run an experiment config: resumable units, atomic writes, strict results.

The work is split into units: (analysis, batch of prompt pairs). Each finished unit's per-prompt
values are written atomically to `OUT/units/<analysis>/batch-NNNNN.safetensors`, so a run killed at
any point loses at most the unit in progress. `resume=True` skips the units on disk; because every
unit is a pure function of the config, the final results are identical to an uninterrupted run.
Resuming with a different config (compared by the hash of the resolved config) is refused.

Output directory: `config.resolved.toml` (first line: its hash), `run.log`, `units/`,
`results.json` (strict JSON, schema in `write_results`), `tensors.safetensors` (per-prompt arrays)
and `report.html`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from interp.analyses import PER_PROMPT, Computed, compute, finish
from interp.config import AnalysisConfig, ConfigError, ExperimentConfig, to_toml
from interp.console import warn
from interp.files import write_atomic
from interp.metrics import make_metric
from interp.prompts import PromptPairs

BASELINE = "_baseline"


def config_hash(config: ExperimentConfig) -> str:
    return hashlib.sha256(to_toml(config).encode()).hexdigest()[:16]


class RunLog:
    def __init__(self, path: Path):
        self.path = path

    def __call__(self, message: str) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        with self.path.open("a") as handle:
            handle.write(f"{stamp} {message}\n")


def prepare_out_dir(config: ExperimentConfig, out: Path, resume: bool) -> str:
    """Create or check the output directory; refuse to mix runs."""
    out.mkdir(parents=True, exist_ok=True)
    digest = config_hash(config)
    resolved = out / "config.resolved.toml"
    if resolved.exists():
        previous = resolved.read_text()
        previous_hash = previous.splitlines()[0].removeprefix("# config hash: ").strip()
        if not resume:
            raise ConfigError(
                f"{out} already holds a run (config hash {previous_hash}). Pass --resume to continue it, "
                "or choose another --out."
            )
        if previous_hash != digest:
            old = tomllib.loads(previous)
            new = tomllib.loads(to_toml(config))
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ConfigError(
                f"Cannot resume {out}: the config changed (hash {previous_hash} -> {digest}; "
                f"different: {', '.join(changed)}). Resume with the original config or use another --out."
            )
    write_atomic(resolved, f"# config hash: {digest}\n" + to_toml(config))
    return digest


def _unit_path(out: Path, label: str, batch: int | None) -> Path:
    name = "all.safetensors" if batch is None else f"batch-{batch:05d}.safetensors"
    return out / "units" / label / name


def _save_unit(path: Path, computed: Computed) -> None:
    meta = {"dims": json.dumps(list(computed.dims)), "labels": json.dumps(computed.labels or {})}
    write_atomic(path, save({"values": computed.values.contiguous().float().cpu()}, metadata=meta))


def _load_unit(path: Path) -> Computed:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        meta = handle.metadata()
    values = load_file(path)["values"]
    return Computed(tuple(json.loads(meta["dims"])), values, json.loads(meta["labels"]) or None)


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


def run_experiment(
    config: ExperimentConfig, out: str | Path, *, resume: bool = False, progress: bool = True
) -> dict:
    """Run every unit not yet on disk, then write results.json, tensors.safetensors and report.html."""
    from tqdm import tqdm

    from interp.model import load_model
    from interp.tasks import build_pairs

    out = Path(out)
    digest = prepare_out_dir(config, out, resume)
    log = RunLog(out / "run.log")
    log(f"start (resume={resume}) config hash {digest}")
    torch.manual_seed(config.seed)
    model = load_model(
        config.model.source,
        device=config.model.device,
        dtype=config.model.dtype,
        weights=config.model.weights,
    )
    pairs = build_pairs(config.task, model, config.seed)
    plan = plan_units(config, len(pairs))
    by_label = {a.label: a for a in config.analysis}
    todo = [u for u in plan.units if not _unit_path(out, *u).exists()]
    if len(todo) < len(plan.units):
        log(f"resuming: {len(plan.units) - len(todo)} of {len(plan.units)} units already done")
    for label, batch in tqdm(todo, desc="units", disable=not progress):
        subset = pairs.select(plan.batches[batch]) if batch is not None else pairs
        if label == BASELINE:
            computed = _baseline(model, subset, config.task.metric)
        else:
            computed = _compute_with_retry(by_label[label], model, subset, config, log)
        _save_unit(_unit_path(out, label, batch), computed)
        log(f"done {label} batch {batch}")
    results = write_results(config, out, model, pairs, plan, digest)
    from interp.report_builder import write_report

    report = write_report(out)
    log(f"finished; report {report}")
    return results


def _gather(out: Path, label: str, plan: Plan) -> Computed:
    batches = sorted({b for lab, b in plan.units if lab == label})
    if batches == [None]:
        return _load_unit(_unit_path(out, label, None))
    parts = [_load_unit(_unit_path(out, label, b)) for b in batches]
    return Computed(parts[0].dims, torch.cat([p.values for p in parts], dim=-1), parts[0].labels)


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


def write_results(
    config: ExperimentConfig, out: Path, model, pairs: PromptPairs, plan: Plan, digest: str
) -> dict:
    from interp import __version__

    info = model.interp_info
    baseline = _gather(out, BASELINE, plan).values.mean(-1)
    clean, corrupted = float(baseline[0]), float(baseline[1])
    tensors = {"baseline.per_prompt": _gather(out, BASELINE, plan).values}
    analyses = []
    for analysis in config.analysis:
        computed = _gather(out, analysis.label, plan)
        per_prompt = analysis.kind in PER_PROMPT
        mean = computed.values.mean(-1) if per_prompt else computed.values
        values, description = finish(analysis, mean, clean, corrupted)
        if not torch.isfinite(values).all():
            raise ValueError(
                f"analysis {analysis.label!r} produced non-finite values (NaN or inf); results.json must be "
                "strict JSON. Check the metric (clean and corrupted may coincide) and the model dtype."
            )
        tensors[analysis.label] = values.contiguous()
        if per_prompt:
            tensors[f"{analysis.label}.per_prompt"] = computed.values.contiguous()
        analyses.append(
            {
                "kind": analysis.kind,
                "name": analysis.label,
                "dims": list(computed.dims),
                "labels": computed.labels or {},
                "values": values.tolist(),
                "description": description,
                "top_k": analysis.top_k,
                "options": analysis.model_dump(mode="json", exclude={"kind", "name", "top_k"}),
            }
        )
    example = pairs.select([0])
    decode = model.tokenizer.decode
    attention_example = _attention_example(model, example, analyses)
    results = {
        "interp_version": __version__,
        "config_hash": digest,
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
            "name": config.task.name,
            "n_pairs": len(pairs),
            "same_length": pairs.same_length,
            "example": {
                "clean_tokens": [decode([int(t)]) for t in example.clean_tokens[0]],
                "corrupted_tokens": [decode([int(t)]) for t in example.corrupted_tokens[0]],
                "answer": decode([int(example.answer[0])]),
                "wrong": decode([int(example.wrong[0])]),
            },
        },
        "baseline": {"metric": config.task.metric, "clean": clean, "corrupted": corrupted},
        "attention_example": attention_example,
        "analyses": analyses,
        "written": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_atomic(out / "results.json", json.dumps(results, indent=1, allow_nan=False))
    write_atomic(out / "tensors.safetensors", save({k: v.float().cpu() for k, v in tensors.items()}))
    return results
