"""The Ray backend: units spread over actors, each of which loads the model once.

    interp run experiments/ioi.toml --backend ray --num-workers 4 --gpus-per-worker 1
    interp run experiments/ioi.toml --backend ray --address ray://head:10001   # an existing cluster

Each actor is a `UnitWorker` for the same config (model loaded from its Hugging Face cache or a
shared directory, prompt pairs rebuilt from the config's seed), so a unit gives the same values
on any actor. The driver keeps a bounded number of units in flight per actor and writes each
finished unit through the runner's atomic store; the manifest of unit files, not Ray's state,
decides what is done, so `--resume` works across backends and after a lost driver.

Same values as the local backend: every actor computes with the run's torch CPU thread count
(`threads`, by default the driver's; Ray itself would give an actor one thread per CPU it reserves),
because float sums depend on how the work is split over threads.

Faults: an actor that dies (process killed, node lost) is restarted by Ray (`max_restarts`) and
its in-flight units are retried (`max_task_retries`), so the sweep completes with identical
results. An exception inside a unit is not retried. A user error (an `InterpError`: a bad option,
heads out of range), in a unit or while an actor loads the model and prompts, is raised in the
driver as itself, as the local backend raises it; any other exception surfaces with the worker's
traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from interp.base.errors import InputError, InterpError
from interp.runner.backends.base import Unit
from interp.runner.config import ExperimentConfig
from interp.runner.registry import Computed
from interp.runner.worker import UnitWorker

IN_FLIGHT_PER_WORKER = 2


class KeepsUserErrors:
    """Base of our Ray actors: the actor's worker is built by `build()` with `threads` CPU threads, and a
    user error while it is built is kept and raised by every call, so that it reaches the driver as a
    task error (which carries it), not as a dead actor (which keeps only its text)."""

    def __init__(self, threads: int, build: Callable[[], Any]):
        torch.set_num_threads(threads)
        self.error: InterpError | None = None
        try:
            self.worker = build()
        except InterpError as error:
            self.error = error

    def _ready(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.worker


def get_raising_user_errors(ray, refs):
    """`ray.get`, raising a user error from an actor as itself (exit 2, `error: ...`, as locally)."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, InterpError):
            raise error.cause from None
        raise


class RayDriver:
    """Base of our Ray drivers: `_start_ray` joins the Ray instance already running or starts one (then
    owned: shut down by `close`), and `close` kills the driver's actors."""

    actors: list

    def _start_ray(self, ray, address: str | None) -> None:
        self.ray, self.actors = ray, []
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        if self.owns_ray:
            self.ray.shutdown()


class RayWorker(KeepsUserErrors):
    """The actor: a `UnitWorker` computing with `threads` CPU threads."""

    def __init__(self, config: ExperimentConfig, threads: int):
        super().__init__(threads, lambda: UnitWorker(config))

    def n_pairs(self) -> int:
        return self._ready().n_pairs()

    def compute(self, label: str, batch: int | None) -> Computed:
        return self._ready().compute(label, batch)

    def messages(self) -> list[str]:
        return list(self._ready().messages)

    def describe(self, analyses: list[dict]) -> dict:
        return self._ready().describe(analyses)


class RayExecutor(RayDriver):
    """Spreads units over Ray actors, each a `UnitWorker` that loads the model once."""

    def __init__(
        self,
        config: ExperimentConfig,
        address: str | None = None,
        num_workers: int = 2,
        gpus_per_worker: float = 0.0,
        cpus_per_worker: float = 1.0,
        threads: int | None = None,
    ):
        try:
            import ray
        except ImportError as error:  # pragma: no cover - depends on the install
            raise RuntimeError("the ray backend needs Ray: pip install 'interp[ray]'") from error
        if num_workers < 1:
            raise InputError(f"num_workers must be at least 1, got {num_workers}")
        self._start_ray(ray, address)
        remote = ray.remote(RayWorker).options(
            num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_restarts=-1, max_task_retries=-1
        )
        threads = torch.get_num_threads() if threads is None else threads
        self.actors = [remote.remote(config, threads) for _ in range(num_workers)]
        try:
            self._n_pairs = self.get(self.actors[0].n_pairs.remote())
        except BaseException:
            self.close()
            raise

    def get(self, ref):
        """`ray.get`, raising a user error from a worker as itself."""
        return get_raising_user_errors(self.ray, ref)

    def n_pairs(self) -> int:
        return self._n_pairs

    def map(self, units: list[Unit]) -> Iterator[tuple[Unit, Computed]]:
        """Yield (unit, values) as units finish, in completion order (the store makes order irrelevant)."""
        ray = self.ray
        queue = list(units)
        pending: dict = {}  # object ref -> (unit, actor index)
        load = [0] * len(self.actors)

        def submit() -> None:
            while queue:
                actor = min(range(len(self.actors)), key=load.__getitem__)
                if load[actor] >= IN_FLIGHT_PER_WORKER:
                    return
                unit = queue.pop(0)
                pending[self.actors[actor].compute.remote(*unit)] = (unit, actor)
                load[actor] += 1

        submit()
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            unit, actor = pending.pop(done[0])
            load[actor] -= 1
            computed = self.get(done[0])  # a unit's exception is raised here
            submit()
            yield unit, computed

    def messages(self) -> list[str]:
        return [m for actor in self.actors for m in self.get(actor.messages.remote())]

    def describe(self, analyses: list[dict]) -> dict:
        return self.get(self.actors[0].describe.remote(analyses))
