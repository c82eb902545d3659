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
from interp.runner.run import _sigterm_stops_the_run, _stopped
from interp.runner.store import MANIFEST, RESOLVED, RunDirectory, read_run_file
from interp.runner.text_source import token_rows
from interp.runner.training_config import TRAINING_FILES, TrainConfig, train_toml

CHECKPOINT = "checkpoint.pt"
SUMMARY = "training.json"
CHECKPOINT_FORMAT = 1


class TrainingDirectory(RunDirectory):
    """A run directory whose run files are the training's (and one folder per dictionary)."""

    def __init__(self, out: str | Path, config: TrainConfig):
        super().__init__(Path(out))
        self.run_files = {MANIFEST, RESOLVED, "run.log", ".lock", *TRAINING_FILES}
        self.run_files |= {table.name for table in config.dictionary}

    def resolved(self, config: TrainConfig) -> str:
        return train_toml(config)


def make_dictionaries(model, config: TrainConfig) -> list:
    """The config's dictionaries, freshly initialised, their widths read from the hooks."""
    from interp.dictionaries.registry import make_dictionary
    from interp.dictionaries.streaming import model_activations
    from interp.model.hooks import validate_hook_names

    hooks = [h for t in config.dictionary for h in (t.hook, t.hook_out) if h is not None]
    validate_hook_names(model, hooks)
    widths = {
        name: a.shape[-1]
        for name, a in model_activations(model, torch.zeros(1, 2, dtype=torch.long), hooks).items()
    }
    out = []
    for table in config.dictionary:
        d_in = widths[table.hook]
        d_sae = table.d_sae
        if d_sae is None:
            d_sae = table.expansion * d_in
            if d_sae != int(d_sae):
                raise InputError(
                    f"dictionary {table.name!r}: expansion={table.expansion} x d_in={d_in} is not a whole "
                    "number of latents; give d_sae or another expansion."
                )
            d_sae = int(d_sae)
        fields = dict(d_in=d_in, d_sae=d_sae, hook_name=table.hook, kind=table.kind)
        if table.encoder_init_norm is not None:
            fields |= dict(encoder_init_norm=table.encoder_init_norm)
        if table.kind != "sae":
            fields |= dict(hook_name_out=table.hook_out, d_out=widths[table.hook_out])
        try:
            dictionary = make_dictionary(
                table.architecture, seed=table.seed, **fields, **table.architecture_fields()
            )
        except InputError as error:
            raise InputError(f"dictionary {table.name!r}: {error}") from None
        out.append(dictionary.to(model.cfg.device))
    return out


def training_configs(config: TrainConfig) -> list:
    from interp.dictionaries.training import TrainingConfig

    configs = []
    for table in config.dictionary:
        try:
            configs.append(
                TrainingConfig(
                    batch_tokens=table.batch_tokens,
                    lr=table.lr,
                    lr_warmup_steps=table.lr_warmup_steps,
                    lr_decay_fraction=table.lr_decay_fraction,
                    n_tokens=config.data.n_tokens,
                    buffer_tokens=table.buffer_tokens,
                    seed=table.seed,
                    b_dec_init=table.b_dec_init,
                    normalize_activations=table.normalize_activations,
                    dead_after_tokens=table.dead_after_tokens,
                    log_every=config.log_every,
                    adam_betas=tuple(table.adam_betas),
                )
            )
        except InputError as error:
            raise InputError(f"dictionary {table.name!r}: {error}") from None
    return configs


def _save_checkpoint(run: TrainingDirectory, digest: str, trainers, rows, tokens_read: int) -> None:
    state = {
        "format": CHECKPOINT_FORMAT,
        "config_hash": digest,
        "tokens_read": tokens_read,
        "data": json.dumps(rows.state()),
        "trainers": trainers.state_dict(),
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


def _to_device(state, device):
    if isinstance(state, torch.Tensor):
        return state.to(device) if state.dtype != torch.uint8 else state  # generator states stay on the CPU
    if isinstance(state, dict):
        return {k: _to_device(v, device) for k, v in state.items()}
    if isinstance(state, list):
        return [_to_device(v, device) for v in state]
    return state


def _postfix(config: TrainConfig, trainers) -> str:
    parts = []
    for table, trainer in zip(config.dictionary, trainers.trainers, strict=True):
        if trainer.log:
            r = trainer.log[-1]
            parts.append(
                f"{table.name}: L0 {r['l0']:.1f} EV {r['explained_variance']:.3f} dead {r['dead_fraction']:.1%}"
            )
    return "; ".join(parts)


def run_training(
    config: TrainConfig, out: str | Path, *, resume: bool = False, force: bool = False, progress: bool = True
) -> dict:
    """Train every dictionary of `config` into `out` and return the summary written to training.json.

    `resume`: continue an interrupted run of the same config from its checkpoint. `force`: clear the
    run files of another or unknown run in `out`. SIGTERM stops the run as Ctrl-C does (the last
    checkpoint is kept; continue with `resume`)."""
    with _sigterm_stops_the_run():
        return _train(config, Path(out), resume, force, progress)


def _train(config: TrainConfig, out: Path, resume: bool, force: bool, progress: bool) -> dict:
    from interp.model.loading import load_model

    run = TrainingDirectory(out, config)
    digest = run.open(config, resume=resume, force=force)
    previous_threads = torch.get_num_threads()
    try:
        run.log(f"start training (resume={resume}, force={force}) config hash {digest}")
        threads = run.threads() or previous_threads
        torch.set_num_threads(threads)
        m = config.model
        model = load_model(m.source, device=m.device, dtype=m.dtype, weights=m.weights)
        dictionaries = make_dictionaries(model, config)
        configs = training_configs(config)
        rows = token_rows(model, config.data)
        eval_batches = list(rows.batches(config.data.model_batch, max_tokens=config.data.eval_tokens))
        if not eval_batches:
            raise InputError("the data holds no tokens: no held-out rows could be read.")
        run.begin(config, digest, threads)
        summary = _train_and_write(
            run, digest, config, model, dictionaries, configs, rows, eval_batches, resume, progress
        )
        run.log("finished")
        return summary
    except InterpError as error:
        run.log(f"error: {error}")
        raise
    except BaseException as error:
        run.log(_stopped(error).replace("finished units are kept", "the last checkpoint is kept"))
        raise
    finally:
        torch.set_num_threads(previous_threads)
        run.close()


def _train_and_write(run, digest, config, model, dictionaries, configs, rows, eval_batches, resume, progress):
    from tqdm import tqdm

    from interp.dictionaries.evaluation import evaluate_on_model
    from interp.dictionaries.io import save_dictionary
    from interp.dictionaries.streaming import ModelTrainers

    trainers = ModelTrainers(model, dictionaries, configs, config.data.n_tokens)
    tokens_read = 0
    state = _load_checkpoint(run, digest) if resume else None
    if state is not None:
        trainers.load_state_dict(_to_device(state["trainers"], model.cfg.device))
        rows = token_rows(model, config.data, state=json.loads(state["data"]))
        tokens_read = int(state["tokens_read"])
        run.log(f"resuming after {tokens_read} tokens")
    every, next_checkpoint = config.checkpoint_every, None
    if every:
        next_checkpoint = (tokens_read // every + 1) * every
    exhausted = False
    bar = tqdm(
        total=config.data.n_tokens,
        initial=min(tokens_read, config.data.n_tokens),
        unit="tok",
        disable=not progress,
        desc="training",
    )
    try:
        batches = rows.batches(config.data.model_batch)
        while not trainers.done:
            batch = next(batches, None)
            if batch is None:
                exhausted = True
                break
            tokens, mask = batch
            trainers.feed(tokens, mask)
            n = int(mask.sum())
            tokens_read += n
            bar.update(min(n, max(0, config.data.n_tokens - bar.n)))
            bar.set_postfix_str(_postfix(config, trainers), refresh=False)
            if next_checkpoint is not None and tokens_read >= next_checkpoint and not trainers.done:
                _save_checkpoint(run, digest, trainers, rows, tokens_read)
                next_checkpoint = (tokens_read // every + 1) * every
    finally:
        bar.close()
    if exhausted:
        trained = min(t.tokens for t in trainers.trainers)
        run.warn(
            f"the data ended after {tokens_read} tokens, before the budget data.n_tokens={config.data.n_tokens}: "
            f"the dictionaries trained on {trained} tokens and the learning rate did not finish its decay."
        )
    _save_checkpoint(run, digest, trainers, rows, tokens_read)
    finished = trainers.finish()
    summary = {
        "config_hash": digest,
        "tokens_read": tokens_read,
        "data_exhausted": exhausted,
        "dictionaries": {},
    }
    for table, dictionary, trainer in zip(config.dictionary, finished, trainers.trainers, strict=True):
        metrics = evaluate_on_model(model, dictionary, eval_batches, model_batch=config.data.model_batch)
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
            "tokens_trained": trainer.tokens,
            "steps": trainer.step,
            "metrics": _finite(metrics.to_dict()),
        }
        write_atomic(directory / "metrics.json", json.dumps(entry["metrics"], indent=1, allow_nan=False))
        summary["dictionaries"][table.name] = {**entry, "training_log": trainer.log}
        run.log(
            f"{table.name}: explained variance {metrics.explained_variance:.4f}, CE loss recovered "
            f"{metrics.ce_loss_recovered:.4f}, L0 {metrics.l0:.2f}, dead {metrics.dead_fraction:.3f}"
        )
    write_atomic(run.out / SUMMARY, json.dumps(summary, indent=1, allow_nan=False))
    return summary


def _finite(values: dict) -> dict:
    """NaN (e.g. CE loss recovered when zero ablation costs nothing) written as null: strict JSON."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}
