"""The local backend: one worker in this process, units in plan order."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from interp.runner.backends.base import Unit
from interp.runner.config import ExperimentConfig
from interp.runner.registry import Computed
from interp.runner.worker import UnitWorker


class LocalExecutor:
    """Runs units in this process, in plan order, on one `UnitWorker`.

    `threads`: torch's CPU thread count while units run (the run's recorded count, so that a resumed run
    computes what the uninterrupted one did: float sums depend on how the work is split); None keeps
    torch's setting. The previous count is restored by `close`.
    """

    def __init__(self, config: ExperimentConfig, threads: int | None = None):
        self._previous_threads = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            self.worker = UnitWorker(config)
        except BaseException:
            self.close()
            raise

    def n_pairs(self) -> int:
        return self.worker.n_pairs()

    def map(self, units: list[Unit]) -> Iterator[tuple[Unit, Computed]]:
        for unit in units:
            yield unit, self.worker.compute(*unit)

    def messages(self) -> list[str]:
        return list(self.worker.messages)

    def describe(self, analyses: list[dict]) -> dict:
        return self.worker.describe(analyses)

    def close(self) -> None:
        torch.set_num_threads(self._previous_threads)
