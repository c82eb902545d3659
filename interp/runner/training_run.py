"""`interp train CONFIG.toml --out DIR`: dictionaries trained from the model, resumable, in SAELens's layout.

The run directory has `interp run`'s guarantees (`interp.runner.store.RunDirectory`: a manifest with
the config hash, a lock, atomic writes, no symbolic link followed, another config refused):

    OUT/run.json, config.resolved.toml, run.log, .lock   as for `interp run`
    OUT/checkpoint.pt        the latest checkpoint (every `checkpoint_every` training tokens; atomic)
    OUT/<name>/              each dictionary in SAELens's layout (cfg.json, sae_weights.safetensors,
                             sparsity.safetensors) + metrics.json (`evaluate_on_model`, held-out tokens)
    OUT/training.json        per dictionary: its training log, tokens trained and metrics

Order: check and lock `--out`; load the model; make the dictionaries (widths read from the hooks);
open the data and read the held-out rows (the first `eval_tokens` tokens of the stream, never trained
on); write the manifest; with `--resume`, restore the checkpoint; train, one forward per batch of
rows for every dictionary, writing a checkpoint every `checkpoint_every` tokens; evaluate; write.

A checkpoint holds every trainer's whole state (weights, Adam's moments, the shuffling buffer's rows
and generator, counters, dead-latent clocks, log) and where the data stream stands (documents read,
tokens carried into the next row), so a resumed run skips the tokens already seen and goes on to the
dictionaries an uninterrupted run gives, bit for bit: every float operation is repeated in the same
order, with the torch CPU thread count the run began with (kept in the manifest, as `interp run` does).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import torch

from interp.base.errors import InputError, InterpError
from interp.base.files import write_atomic
from interp.runner.run import _sigterm_stops_the_run, logs_how_it_ends
from interp.runner.store import MANIFEST, RESOLVED, RunDirectory, read_run_file
from interp.runner.training_config import TRAINING_FILES, TrainConfig, train_toml
from interp.runner.training_groups import LocalTraining

CHECKPOINT = "checkpoint.pt"
SUMMARY = "training.json"
CHECKPOINT_FORMAT = 1
BACKENDS = ("local", "ray")


class TrainingDirectory(RunDirectory):
    """A run directory whose run files are the training's (and one folder per dictionary)."""

    def __init__(self, out: str | Path, config: TrainConfig):
        super().__init__(Path(out))
        self.run_files = {MANIFEST, RESOLVED, "run.log", ".lock", *TRAINING_FILES}
        self.run_files |= {table.name for table in config.dictionary}

    def resolved(self, config: TrainConfig) -> str:
        return train_toml(config)


def _save_checkpoint(run: TrainingDirectory, digest: str, training) -> None:
    trainers, data = training.checkpoint()
    tokens_read = training.tokens_read
    state = {
        "format": CHECKPOINT_FORMAT,
        "config_hash": digest,
        "tokens_read": tokens_read,
        "data": json.dumps(data),
        "trainers": trainers,
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(run.out / CHECKPOINT, buffer.getvalue())
    run.log(f"checkpoint after {tokens_read} tokens")


def _load_checkpoint(run: TrainingDirectory, digest: str) -> dict | None:
    """The checkpoint's state, or None (with a warning naming why) when there is none to trust."""
    path = run.out / CHECKPOINT
    if not path.exists() and not path.is_symlink():
        return None
    try:
        state = torch.load(io.BytesIO(read_run_file(path)), weights_only=True, map_location="cpu")
        problem = None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            problem = "it is not a checkpoint of this format"
        elif state.get("config_hash") != digest:
            problem = f"it belongs to config {state.get('config_hash')!r}, not {digest}"
        else:
            return state
    except InterpError:
        problem = "it is a symbolic link or not a regular file, so it is not trusted"
    except Exception as error:  # a truncated or foreign file fails in many ways inside torch.load
        problem = f"it cannot be read ({type(error).__name__})"
    run.warn(f"training from the start: {path} is not used, {problem}")
    return None


def _postfix(config: TrainConfig, latest: list[tuple[int, dict | None]]) -> str:
    parts = []
    for index, record in latest:
        if record is not None:
            parts.append(
                f"{config.dictionary[index].name}: L0 {record['l0']:.1f} EV {record['explained_variance']:.3f} "
                f"dead {record['dead_fraction']:.1%}"
            )
    return "; ".join(parts)


def run_training(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    backend: str = "local",
    backend_options: dict | None = None,
) -> dict:
    """Train every dictionary of `config` into `out` and return the summary written to training.json.

    `resume`: continue an interrupted run of the same config from its checkpoint (written by either
    backend). `force`: clear the run files of another or unknown run in `out`. `backend`: "local" (one
    forward per batch for all dictionaries, in this process) or "ray" (groups of dictionaries placed
    on Ray actors, `interp.runner.ray_training`; `backend_options` are `RayTraining`'s: address,
    num_workers, gpus_per_worker, cpus_per_worker). Both give the same dictionaries. SIGTERM stops the
    run as Ctrl-C does (the last checkpoint is kept; continue with `resume`)."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if backend == "local" and backend_options:
        raise InputError(f"the local backend takes no options, got {sorted(backend_options)}")
    with _sigterm_stops_the_run():
        return _train(config, Path(out), resume, force, progress, backend, dict(backend_options or {}))


def _start(config: TrainConfig, backend: str, options: dict, threads: int):
    if backend == "ray":
        from interp.runner.ray_training import RayTraining

        return RayTraining(config, threads=threads, **options)
    return LocalTraining(config)


def _train(
    config: TrainConfig, out: Path, resume: bool, force: bool, progress: bool, backend: str, options: dict
) -> dict:
    run = TrainingDirectory(out, config)
    digest = run.open(config, resume=resume, force=force)
    previous_threads = torch.get_num_threads()
    training = None
    with logs_how_it_ends(run, kept="the last checkpoint is kept"):
        try:
            run.log(
                f"start training (resume={resume}, force={force}, backend={backend}) config hash {digest}"
            )
            threads = run.threads() or previous_threads
            torch.set_num_threads(threads)
            training = _start(config, backend, options, threads)
            for line in training.describe():
                run.log(line)
            run.begin(config, digest, threads)
            summary = _train_and_write(run, digest, config, training, resume, progress)
            run.log("finished")
            return summary
        finally:
            if training is not None:
                training.close()
            torch.set_num_threads(previous_threads)


def _train_and_write(run, digest, config, training, resume, progress):
    from tqdm import tqdm

    from interp.dictionaries.io import save_dictionary

    state = _load_checkpoint(run, digest) if resume else None
    if state is not None:
        training.restore(state)
        run.log(f"resuming after {training.tokens_read} tokens")
    every, next_checkpoint = config.checkpoint_every, None
    if every:
        next_checkpoint = (training.tokens_read // every + 1) * every
    bar = tqdm(
        total=config.data.n_tokens,
        initial=min(training.tokens_read, config.data.n_tokens),
        unit="tok",
        disable=not progress,
        desc="training",
    )

    def on_batch(n: int) -> None:
        bar.update(min(n, max(0, config.data.n_tokens - bar.n)))
        bar.set_postfix_str(_postfix(config, training.latest()), refresh=False)

    try:
        while not training.done:
            tokens_read = training.train_until(next_checkpoint, on_batch)
            if next_checkpoint is not None and tokens_read >= next_checkpoint and not training.trained:
                _save_checkpoint(run, digest, training)
                next_checkpoint = (tokens_read // every + 1) * every
    finally:
        bar.close()
    tokens_read = training.tokens_read
    if training.exhausted:
        trained = min(training.tokens_trained())
        run.warn(
            f"the data ended after {tokens_read} tokens, before the budget data.n_tokens={config.data.n_tokens}: "
            f"the dictionaries trained on {trained} tokens and the learning rate did not finish its decay."
        )
    _save_checkpoint(run, digest, training)
    summary = {
        "config_hash": digest,
        "tokens_read": tokens_read,
        "data_exhausted": training.exhausted,
        "dictionaries": {},
    }
    for result in training.finish():
        table = config.dictionary[result.index]
        dictionary, metrics = result.dictionary, result.metrics
        directory = run.out / table.name
        save_dictionary(
            dictionary, directory, log_density=metrics.log_density, model_name=config.model.source
        )
        entry = {
            "hook": table.hook,
            "hook_out": dictionary.hook_name_out,
            "architecture": dictionary.architecture,
            "kind": dictionary.kind,
            "d_in": dictionary.d_in,
            "d_sae": dictionary.d_sae,
            "tokens_trained": result.tokens,
            "steps": result.steps,
            "metrics": _finite(metrics.to_dict()),
        }
        write_atomic(directory / "metrics.json", json.dumps(entry["metrics"], indent=1, allow_nan=False))
        summary["dictionaries"][table.name] = {**entry, "training_log": result.log}
        run.log(
            f"{table.name}: explained variance {metrics.explained_variance:.4f}, CE loss recovered "
            f"{metrics.ce_loss_recovered:.4f}, L0 {metrics.l0:.2f}, dead {metrics.dead_fraction:.3f}"
        )
    write_atomic(run.out / SUMMARY, json.dumps(summary, indent=1, allow_nan=False))
    return summary


def _finite(values: dict) -> dict:
    """NaN (e.g. CE loss recovered when zero ablation costs nothing) written as null: strict JSON."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}
