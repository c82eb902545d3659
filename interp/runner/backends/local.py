"""The local backend: one worker in this process, units in plan order."""

from __future__ import annotations

from collections.abc import Iterator

from interp.runner.backends.base import Unit
from interp.runner.config import ExperimentConfig
from interp.runner.registry import Computed
from interp.runner.worker import UnitWorker


class LocalExecutor:
    """Runs units in this process, in plan order, on one `UnitWorker`."""

    def __init__(self, config: ExperimentConfig):
        self.worker = UnitWorker(config)

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
        pass
