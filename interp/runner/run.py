"""Run an experiment config: resumable units, atomic writes, strict results, a directory you can trust.

The work is split into units: (analysis, batch of prompt pairs). Each finished unit's per-prompt
values are written atomically to `OUT/units/<analysis>/batch-NNNNN.safetensors` with the config's
hash and a checksum, so a run killed at any point loses at most the unit in progress, and a unit is
used again only if it is this config's and intact (`interp.runner.store`). Because every unit is a
pure function of the config (computed, on any backend, with the torch CPU thread count the run began
with, recorded in its manifest), a resumed run's results are identical to an uninterrupted run's.

Order of a run: check and lock `--out`; load the model and build the prompts (a failure here leaves
nothing that blocks the corrected command); write the manifest; compute the baseline units and
refuse a task whose clean and corrupted prompts give the same metric; compute the remaining units;
write `results.json` (strict JSON), `tensors.safetensors` and `report.html`. Errors are written to
`run.log` as well as raised, and so is a stop: Ctrl-C (SIGINT) and SIGTERM alike leave a `stopped:`
line; during a run SIGTERM raises `Terminated` (a KeyboardInterrupt), so the run stops the way Ctrl-C
stops it, keeping every finished unit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import signal
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from safetensors.torch import save

from interp.base.errors import InterpError, ResultsError
from interp.base.files import write_atomic
from interp.methods.circuits.graph import Graph
from interp.runner.backends.base import Executor, Unit
from interp.runner.config import ExperimentConfig
from interp.runner.labels import BASELINE
from interp.runner.registry import Computed, spec_for
from interp.runner.store import RunDirectory
from interp.runner.worker import Plan, plan_units

GAP_EPSILON = 1e-6


class Terminated(KeyboardInterrupt):
    """The run received SIGTERM: it stops as on Ctrl-C (finished units kept; continue with --resume)."""


@contextlib.contextmanager
def _sigterm_stops_the_run() -> Iterator[None]:
    """SIGTERM raises `Terminated` while the run is in progress (only where Python may set handlers: the
    main thread, and only over the default action; a handler someone else installed is left alone)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield
        return

    def terminate(signum, frame):
        raise Terminated("SIGTERM")

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stopped(error: BaseException, kept: str) -> str:
    if isinstance(error, Terminated):
        return f"stopped: terminated by SIGTERM; {kept} (continue with --resume)"
    if isinstance(error, KeyboardInterrupt):
        return f"stopped: interrupted (SIGINT, Ctrl-C); {kept} (continue with --resume)"
    return f"stopped: {type(error).__name__}: {error}"


@contextlib.contextmanager
def logs_how_it_ends(run: RunDirectory, kept: str = "finished units are kept") -> Iterator[None]:
    """Log to `run`'s run.log how the block ended (an input error, or a stop by signal or exception,
    saying what is `kept`), re-raise, and close `run` (its lock) whatever happened."""
    try:
        yield
    except InterpError as error:
        run.log(f"error: {error}")
        raise
    except BaseException as error:
        run.log(_stopped(error, kept))
        raise
    finally:
        run.close()


def run_experiment(
    config: ExperimentConfig,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    backend: str = "local",
    backend_options: dict | None = None,
) -> dict:
    """Run every unit not yet done, then write results.json, tensors.safetensors and report.html.

    `resume`: continue a run of the same config in `out` (the only way to reuse its units).
    `force`: clear the run files of another or unknown run in `out` and start again.
    `backend`: "local" (this process) or "ray" (actors; `backend_options`: address, num_workers,
    gpus_per_worker). Either way finished units land in the same store, so a run started on one
    backend resumes on the other.
    SIGTERM during the run raises `Terminated` (a KeyboardInterrupt) after logging it, as Ctrl-C does.
    """
    with _sigterm_stops_the_run():
        return _run(config, Path(out), resume, force, progress, backend, backend_options)


def _run(
    config: ExperimentConfig,
    out: Path,
    resume: bool,
    force: bool,
    progress: bool,
    backend: str,
    backend_options: dict | None,
) -> dict:
    from interp.runner.backends import make_executor

    run = RunDirectory(out)
    digest = run.open(config, resume=resume, force=force)
    with logs_how_it_ends(run):
        run.log(f"start (resume={resume}, force={force}, backend={backend}) config hash {digest}")
        threads = run.threads() or torch.get_num_threads()  # a resumed run keeps the count it began with
        executor = make_executor(backend, config, threads=threads, **(backend_options or {}))
        try:
            run.begin(config, digest, threads)
            plan = plan_units(config, executor.n_pairs())
            done = {unit for unit in plan.units if run.load_unit(*unit, digest) is not None}
            if done:
                run.log(f"resuming: {len(done)} of {len(plan.units)} units already done")
            todo = [unit for unit in plan.units if unit not in done]
            _compute(run, executor, [u for u in todo if u[0] == BASELINE], digest, progress, "baseline")
            _check_gap(_gather(run, BASELINE, plan, digest).values.mean(-1), config)
            _compute(run, executor, [u for u in todo if u[0] != BASELINE], digest, progress, "units")
            for message in executor.messages():
                run.log(message)
            results = write_results(config, run, plan, digest, executor)
        finally:
            executor.close()
        from interp.report.run_report import write_report

        report = write_report(run.out)
        run.log(f"finished; report {report}")
        return results


def _compute(
    run: RunDirectory, executor: Executor, units: list[Unit], digest: str, progress: bool, what: str
) -> None:
    from tqdm import tqdm

    finished: Iterable[tuple[Unit, Computed]] = executor.map(units)
    for (label, batch), computed in tqdm(
        finished, total=len(units), desc=what, disable=not progress or not units
    ):
        run.save_unit(label, batch, computed, digest)
        run.log(f"done {label} batch {batch}")


def _check_gap(baseline: torch.Tensor, config: ExperimentConfig) -> None:
    clean, corrupted = float(baseline[0]), float(baseline[1])
    if abs(clean - corrupted) < GAP_EPSILON:
        raise ResultsError(
            f"the clean and corrupted prompts give the same {config.task.metric} ({clean:.6g}), so no effect "
            "can be measured against the gap between them: the corrupted prompts do not change the behaviour. "
            "Check the task's pairs (are clean and corrupted different? do the answers differ?)."
        )


def _gather(run: RunDirectory, label: str, plan: Plan, digest: str) -> Computed:
    batches = sorted({b for lab, b in plan.units if lab == label}, key=lambda b: -1 if b is None else b)
    parts = []
    for batch in batches:
        part = run.load_unit(label, batch, digest)
        if part is None:
            raise ResultsError(f"unit {label} batch {batch} is missing or damaged; run again with --resume")
        parts.append(part)
    if batches == [None]:
        return parts[0]
    return Computed(parts[0].dims, torch.cat([p.values for p in parts], dim=-1), parts[0].labels)


def write_results(
    config: ExperimentConfig, run: RunDirectory, plan: Plan, digest: str, executor: Executor
) -> dict:
    """Gather every unit, finish each analysis and write results.json and tensors.safetensors atomically."""
    from interp.base.version import __version__

    out = run.out
    baseline_units = _gather(run, BASELINE, plan, digest).values
    baseline = baseline_units.mean(-1)
    clean, corrupted = float(baseline[0]), float(baseline[1])
    tensors = {"baseline.per_prompt": baseline_units}
    analyses = []
    for analysis in config.analysis:
        computed = _gather(run, analysis.label, plan, digest)
        spec = spec_for(analysis.kind)
        mean = computed.values.mean(-1) if spec.per_prompt else computed.values
        finished = spec.finish(analysis, mean, clean, corrupted)
        values = finished.values
        if not torch.isfinite(values).all():
            raise ResultsError(
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
                "options": analysis.read_options(),
                **(computed.extra or {}),
                **(finished.extra or {}),
            }
        )
    facts = executor.describe(analyses)
    for entry in analyses:  # edge names come from the model's graph, not from every unit
        if entry["dims"] == ["edge"]:
            entry["edges"] = Graph(facts["model"]["n_layers"], facts["model"]["n_heads"]).edge_names
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
