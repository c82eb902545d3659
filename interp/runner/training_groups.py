"""A group of a training config's dictionaries trained in one process: the model loaded once, the data
streamed, one forward per batch for the whole group (stopping at the group's last hook).

`interp train` trains every dictionary as one group in its own process (the local backend), or
places groups on Ray actors (`interp.runner.ray_training`), each streaming its own activations.
Every group reads the same token stream from the start (the same held-out rows first), and a
dictionary's training depends only on the rows it is fed, its own seed and the thread count, so a
dictionary comes out the same whichever group it is in. Groups stop at the same batch boundaries
(`train_until`), so their trainer states join into one checkpoint (`ModelTrainers`' layout, one entry
per dictionary in config order) that either backend resumes, with any grouping.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from interp.base.errors import InputError
from interp.runner.text_source import token_rows
from interp.runner.training_config import TrainConfig


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


def to_device(state, device):
    if isinstance(state, torch.Tensor):
        return state.to(device) if state.dtype != torch.uint8 else state  # generator states stay on the CPU
    if isinstance(state, dict):
        return {k: to_device(v, device) for k, v in state.items()}
    if isinstance(state, list):
        return [to_device(v, device) for v in state]
    return state


@dataclass
class TrainedDictionary:
    """What a group hands back for one dictionary: the trained dictionary (on the CPU), its held-out
    metrics and its training record."""

    index: int
    dictionary: object
    metrics: object
    tokens: int
    steps: int
    log: list


def hook_groups(config: TrainConfig, n_groups: int) -> list[list[int]]:
    """The config's dictionaries (by index) split into at most `n_groups` groups: dictionaries that
    read the same hook points stay together (one forward serves them), and hook sets are dealt out in
    config order, each to the group with the fewest dictionaries so far."""
    if n_groups < 1:
        raise InputError(f"the number of groups must be at least 1, got {n_groups}")
    by_hooks: dict[tuple, list[int]] = {}
    for index, table in enumerate(config.dictionary):
        by_hooks.setdefault((table.hook, table.hook_out), []).append(index)
    groups: list[list[int]] = [[] for _ in range(min(n_groups, len(by_hooks)))]
    for indices in by_hooks.values():
        min(groups, key=len).extend(indices)
    return [sorted(group) for group in groups]


class DictionaryGroup:
    """Dictionaries `indices` of `config` trained on this process's copy of the model."""

    def __init__(self, config: TrainConfig, indices: Sequence[int]):
        from interp.dictionaries.streaming import ModelTrainers
        from interp.model.loading import load_model

        if not indices:
            raise InputError("a training group needs at least one dictionary.")
        self.config, self.indices = config, list(indices)
        part = config.model_copy(update={"dictionary": [config.dictionary[i] for i in self.indices]})
        m = config.model
        self.model = load_model(m.source, device=m.device, dtype=m.dtype, weights=m.weights)
        dictionaries = make_dictionaries(self.model, part)
        self.trainers = ModelTrainers(self.model, dictionaries, training_configs(part), config.data.n_tokens)
        self.rows = token_rows(self.model, config.data)
        data = config.data
        self.eval_batches = list(self.rows.batches(data.model_batch, max_tokens=data.eval_tokens))
        if not self.eval_batches:
            raise InputError("the data holds no tokens: no held-out rows could be read.")
        self.tokens_read = 0
        self.exhausted = False
        self._batches = None

    @property
    def done(self) -> bool:
        return self.trainers.done or self.exhausted

    def restore(self, state: dict) -> None:
        """Continue from a checkpoint's state (`checkpoint_state`'s, any grouping)."""
        every = state["trainers"]["trainers"]
        if len(every) != len(self.config.dictionary):
            raise InputError(
                f"the checkpoint holds {len(every)} dictionaries, this run trains {len(self.config.dictionary)}."
            )
        mine = {"trainers": [every[i] for i in self.indices]}
        self.trainers.load_state_dict(to_device(mine, self.model.cfg.device))
        self.rows = token_rows(self.model, self.config.data, state=json.loads(state["data"]))
        self.tokens_read = int(state["tokens_read"])
        self._batches = None

    def train_until(self, stop: int | None, on_batch: Callable[[int], None] | None = None) -> int:
        """Feed batches until every dictionary is trained, the data ends, or `stop` tokens have been
        read (None: no stop); `on_batch(tokens in the batch)` after each. Returns the tokens read."""
        if self._batches is None:
            self._batches = self.rows.batches(self.config.data.model_batch)
        while not self.trainers.done and (stop is None or self.tokens_read < stop):
            batch = next(self._batches, None)
            if batch is None:
                self.exhausted = True
                break
            tokens, mask = batch
            self.trainers.feed(tokens, mask)
            n = int(mask.sum())
            self.tokens_read += n
            if on_batch is not None:
                on_batch(n)
        return self.tokens_read

    def trainer_states(self) -> list[dict]:
        """Each of the group's trainers' state, in the group's order, on the CPU."""
        return to_device(self.trainers.state_dict()["trainers"], "cpu")

    def data_state(self) -> dict:
        return self.rows.state()

    def latest(self) -> list[tuple[int, dict | None]]:
        """(index, the last training-log record or None) per dictionary, for the progress bar."""
        return [
            (i, t.log[-1] if t.log else None)
            for i, t in zip(self.indices, self.trainers.trainers, strict=True)
        ]

    def finish(self) -> list[TrainedDictionary]:
        """The trained dictionaries with their metrics on the held-out rows."""
        from interp.dictionaries.evaluation import evaluate_on_model

        out = []
        finished = self.trainers.finish()
        for index, dictionary, trainer in zip(self.indices, finished, self.trainers.trainers, strict=True):
            metrics = evaluate_on_model(
                self.model, dictionary, self.eval_batches, model_batch=self.config.data.model_batch
            )
            out.append(
                TrainedDictionary(
                    index, dictionary.to("cpu"), metrics, trainer.tokens, trainer.step, trainer.log
                )
            )
        return out


def checkpoint_state(n_dictionaries: int, groups: Sequence[tuple[Sequence[int], list[dict]]]) -> dict:
    """`ModelTrainers.state_dict()`'s layout for all dictionaries, from (indices, states) per group."""
    states: list[dict | None] = [None] * n_dictionaries
    for indices, group_states in groups:
        for index, state in zip(indices, group_states, strict=True):
            states[index] = state
    if any(s is None for s in states):
        raise InputError("a training group's state is missing from the checkpoint.")
    return {"trainers": states}


class LocalTraining:
    """Every dictionary trained in this process, one forward per batch for all of them."""

    def __init__(self, config: TrainConfig):
        self.group = DictionaryGroup(config, range(len(config.dictionary)))

    def describe(self) -> list[str]:
        return [f"local: {len(self.group.indices)} dictionaries, one forward per batch"]

    @property
    def tokens_read(self) -> int:
        return self.group.tokens_read

    @property
    def trained(self) -> bool:
        return self.group.trainers.done

    @property
    def exhausted(self) -> bool:
        return self.group.exhausted

    @property
    def done(self) -> bool:
        return self.group.done

    def restore(self, state: dict) -> None:
        self.group.restore(state)

    def train_until(self, stop: int | None, on_batch: Callable[[int], None] | None = None) -> int:
        return self.group.train_until(stop, on_batch)

    def latest(self) -> list[tuple[int, dict | None]]:
        return self.group.latest()

    def tokens_trained(self) -> list[int]:
        return [t.tokens for t in self.group.trainers.trainers]

    def checkpoint(self) -> tuple[dict, dict]:
        """(the trainers' state in `ModelTrainers`' layout, the data stream's state)."""
        n = len(self.group.config.dictionary)
        return checkpoint_state(
            n, [(self.group.indices, self.group.trainer_states())]
        ), self.group.data_state()

    def finish(self) -> list[TrainedDictionary]:
        return self.group.finish()

    def close(self) -> None:
        pass
