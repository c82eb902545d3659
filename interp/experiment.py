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
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from interp.analyses import PER_PROMPT, Computed, finish
from interp.config import ConfigError, ExperimentConfig, to_toml
from interp.files import write_atomic
from interp.worker import BASELINE, Plan, plan_units


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


def run_experiment(
    config: ExperimentConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    backend: str = "local",
    backend_options: dict | None = None,
) -> dict:
    """Run every unit not yet on disk, then write results.json, tensors.safetensors and report.html.

    `backend`: "local" (this process) or "ray" (actors; `backend_options`: address, num_workers,
    gpus_per_worker). Either way finished units land in the same store, so a run started on one
    backend resumes on the other.
    """
    from tqdm import tqdm

    from interp.backends import make_executor

    out = Path(out)
    digest = prepare_out_dir(config, out, resume)
    log = RunLog(out / "run.log")
    log(f"start (resume={resume}, backend={backend}) config hash {digest}")
    executor = make_executor(backend, config, **(backend_options or {}))
    try:
        plan = plan_units(config, executor.n_pairs())
        todo = [u for u in plan.units if not _unit_path(out, *u).exists()]
        if len(todo) < len(plan.units):
            log(f"resuming: {len(plan.units) - len(todo)} of {len(plan.units)} units already done")
        for (label, batch), computed in tqdm(
            executor.map(todo), total=len(todo), desc="units", disable=not progress
        ):
            _save_unit(_unit_path(out, label, batch), computed)
            log(f"done {label} batch {batch}")
        for message in executor.messages():
            log(message)
        results = write_results(config, out, plan, digest, executor)
    finally:
        executor.close()
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


def write_results(config: ExperimentConfig, out: Path, plan: Plan, digest: str, executor) -> dict:
    from interp import __version__

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
    facts = executor.describe(analyses)
    results = {
        "interp_version": __version__,
        "config_hash": digest,
        "model": facts["model"],
        "task": facts["task"],
        "baseline": {"metric": config.task.metric, "clean": clean, "corrupted": corrupted},
        "attention_example": facts["attention_example"],
        "analyses": analyses,
        "written": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_atomic(out / "results.json", json.dumps(results, indent=1, allow_nan=False))
    write_atomic(out / "tensors.safetensors", save({k: v.float().cpu() for k, v in tensors.items()}))
    return results
