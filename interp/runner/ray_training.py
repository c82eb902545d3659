"""`interp train --backend ray`: groups of dictionaries placed on Ray actors, each streaming its own
activations from its own copy of the model.

    interp train experiments/train_toy_dictionaries.toml --backend ray --num-workers 4 --gpus-per-worker 1

The dictionaries are split into at most `num_workers` groups by the hook points they read
(`training_groups.hook_groups`: dictionaries on the same hooks share an actor, so one forward serves
them), and each actor is a `DictionaryGroup`: it loads the model, reads the same token stream from
the start and trains its group, its forward stopping at the group's last hook. The driver advances
all actors to the same token counts (the checkpoint boundaries, and rounds of `ROUND_BATCHES` batches
between them for the progress bar), joins their states into the local backend's checkpoint layout,
and writes the checkpoint and the dictionaries through the training directory's atomic store; so a
run can be resumed by either backend, with any number of workers, and gives the dictionaries the
local backend gives (every actor computes with the run's torch CPU thread count).

A user error (an `InterpError`) in an actor is raised in the driver as itself, as locally.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from interp.base.errors import InputError, InterpError
from interp.runner.backends.ray_backend import KeepsUserErrors, RayDriver, get_raising_user_errors
from interp.runner.training_config import TrainConfig
from interp.runner.training_groups import DictionaryGroup, TrainedDictionary, checkpoint_state, hook_groups

ROUND_BATCHES = 8


class RayTrainingGroup(KeepsUserErrors):
    """The actor: a `DictionaryGroup` computing with `threads` CPU threads (a user error while it is
    built is raised by every call, as `KeepsUserErrors` says)."""

    def __init__(self, config: TrainConfig, indices: list[int], threads: int):
        super().__init__(threads, lambda: DictionaryGroup(config, indices))

    def restore(self, state: dict) -> None:
        self._ready().restore(state)

    def train_until(self, stop: int | None) -> tuple[int, bool, bool, list, list[int]]:
        """Train to `stop` tokens; (tokens read, trained, exhausted, latest records, tokens trained)."""
        group = self._ready()
        group.train_until(stop)
        tokens = [t.tokens for t in group.trainers.trainers]
        return group.tokens_read, group.trainers.done, group.exhausted, group.latest(), tokens

    def state(self) -> tuple[list[dict], dict]:
        group = self._ready()
        return group.trainer_states(), group.data_state()

    def finish(self) -> list[TrainedDictionary]:
        return self._ready().finish()


class RayTraining(RayDriver):
    """The training driven over Ray actors; the same interface as `training_groups.LocalTraining`."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        threads: int | None = None,
        address: str | None = None,
        num_workers: int = 2,
        gpus_per_worker: float = 0.0,
        cpus_per_worker: float = 1.0,
    ):
        try:
            import ray
        except ImportError as error:  # pragma: no cover - depends on the install
            raise RuntimeError("the ray backend needs Ray: pip install 'interp[ray]'") from error
        if num_workers < 1:
            raise InputError(f"num_workers must be at least 1, got {num_workers}")
        if gpus_per_worker < 0 or cpus_per_worker <= 0:
            raise InputError(
                f"gpus_per_worker must be >= 0 and cpus_per_worker > 0, got {gpus_per_worker} and {cpus_per_worker}"
            )
        self.config = config
        self.groups = hook_groups(config, num_workers)
        self.num_workers, self.gpus_per_worker = num_workers, gpus_per_worker
        self._start_ray(ray, address)
        remote = ray.remote(RayTrainingGroup).options(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)
        threads = torch.get_num_threads() if threads is None else threads
        self.actors = [remote.remote(config, group, threads) for group in self.groups]
        self.tokens_read, self.trained, self.exhausted = 0, False, False
        self._latest: list = []
        self._tokens: list[int] = []
        try:
            self._all("train_until", 0)  # every actor has loaded its model and read the held-out rows
        except BaseException:
            self.close()
            raise

    def describe(self) -> list[str]:
        names = [[self.config.dictionary[i].name for i in group] for group in self.groups]
        return [
            f"ray: {len(self.groups)} actors (of --num-workers {self.num_workers}), "
            f"{self.gpus_per_worker} GPUs each; groups {names}"
        ]

    def _all(self, method: str, *args) -> list:
        results = get_raising_user_errors(
            self.ray, [getattr(actor, method).remote(*args) for actor in self.actors]
        )
        if method == "train_until":
            counts = {r[0] for r in results}
            if len(counts) != 1:
                raise InterpError(f"training groups read different token counts {sorted(counts)}: a bug.")
            self.tokens_read = counts.pop()
            self.trained = all(r[1] for r in results)
            self.exhausted = any(r[2] for r in results)
            self._latest = sorted(record for r in results for record in r[3])
            self._tokens = [n for r in results for n in r[4]]
        return results

    @property
    def done(self) -> bool:
        return self.trained or self.exhausted

    def restore(self, state: dict) -> None:
        self._all("restore", state)
        self._all("train_until", int(state["tokens_read"]))  # no batch: refreshes the counters

    def train_until(self, stop: int | None, on_batch: Callable[[int], None] | None = None) -> int:
        data = self.config.data
        round_tokens = ROUND_BATCHES * data.model_batch * data.context_length
        while not self.done and (stop is None or self.tokens_read < stop):
            before = self.tokens_read
            target = self.tokens_read + round_tokens
            self._all("train_until", target if stop is None else min(stop, target))
            if on_batch is not None:
                on_batch(self.tokens_read - before)
        return self.tokens_read

    def latest(self) -> list:
        return self._latest

    def tokens_trained(self) -> list[int]:
        return self._tokens

    def checkpoint(self) -> tuple[dict, dict]:
        states = self._all("state")
        trainers = checkpoint_state(
            len(self.config.dictionary), [(g, s[0]) for g, s in zip(self.groups, states, strict=True)]
        )
        data = [s[1] for s in states]
        if any(d != data[0] for d in data):
            raise InterpError("training groups stand at different places in the data: a bug.")
        return trainers, data[0]

    def finish(self) -> list[TrainedDictionary]:
        return sorted((d for group in self._all("finish") for d in group), key=lambda d: d.index)
