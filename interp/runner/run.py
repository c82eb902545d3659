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
import json
from pathlib import Path

import torch
from safetensors.torch import save

from interp.base.files import write_atomic
from interp.runner.backends.base import Executor
from interp.runner.config import ExperimentConfig
from interp.runner.registry import spec_for
from interp.runner.store import RunLog, gather, prepare_out_dir, save_unit, unit_path
from interp.runner.worker import BASELINE, Plan, plan_units


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

    from interp.runner.backends import make_executor

    out = Path(out)
    digest = prepare_out_dir(config, out, resume)
    log = RunLog(out / "run.log")
    log(f"start (resume={resume}, backend={backend}) config hash {digest}")
    executor = make_executor(backend, config, **(backend_options or {}))
    try:
        plan = plan_units(config, executor.n_pairs())
        todo = [u for u in plan.units if not unit_path(out, *u).exists()]
        if len(todo) < len(plan.units):
            log(f"resuming: {len(plan.units) - len(todo)} of {len(plan.units)} units already done")
        for (label, batch), computed in tqdm(
            executor.map(todo), total=len(todo), desc="units", disable=not progress
        ):
            save_unit(unit_path(out, label, batch), computed)
            log(f"done {label} batch {batch}")
        for message in executor.messages():
            log(message)
        results = write_results(config, out, plan, digest, executor)
    finally:
        executor.close()
    from interp.report.run_report import write_report

    report = write_report(out)
    log(f"finished; report {report}")
    return results


def write_results(config: ExperimentConfig, out: Path, plan: Plan, digest: str, executor: Executor) -> dict:
    """Gather every unit, finish each analysis and write results.json and tensors.safetensors atomically."""
    from interp.base.version import __version__

    baseline = gather(out, BASELINE, plan).values.mean(-1)
    clean, corrupted = float(baseline[0]), float(baseline[1])
    tensors = {"baseline.per_prompt": gather(out, BASELINE, plan).values}
    analyses = []
    for analysis in config.analysis:
        computed = gather(out, analysis.label, plan)
        spec = spec_for(analysis.kind)
        mean = computed.values.mean(-1) if spec.per_prompt else computed.values
        finished = spec.finish(analysis, mean, clean, corrupted)
        values = finished.values
        if not torch.isfinite(values).all():
            raise ValueError(
                f"analysis {analysis.label!r} produced non-finite values (NaN or inf); results.json must be "
                "strict JSON. Check the metric (clean and corrupted may coincide) and the model dtype."
            )
        tensors[analysis.label] = values.contiguous()
        if spec.per_prompt:
            tensors[f"{analysis.label}.per_prompt"] = computed.values.contiguous()
        analyses.append(
            {
                "kind": analysis.kind,
                "name": analysis.label,
                "dims": list(computed.dims),
                "labels": computed.labels or {},
                "values": values.tolist(),
                "description": finished.description,
                "no_effect": finished.no_effect,
                "explanation": spec.explanation,
                "figures": list(spec.figures),
                "top_k": analysis.top_k,
                "options": analysis.model_dump(mode="json", include=set(spec.options) - {"name", "top_k"}),
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
