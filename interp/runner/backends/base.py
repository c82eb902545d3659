"""The interface every backend implements: what the runner needs to get units computed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from interp.runner.registry import Computed

Unit = tuple[str, int | None]  # (analysis label, batch index; None for whole-run units)


@runtime_checkable
class Executor(Protocol):
    """Computes units somewhere (this process, Ray actors) and hands them back to the runner's store."""

    def n_pairs(self) -> int:
        """How many prompt pairs the config's task builds (the plan of units depends on it)."""
        ...

    def map(self, units: list[Unit]) -> Iterator[tuple[Unit, Computed]]:
        """Yield each unit with its values as it finishes, in any order."""
        ...

    def messages(self) -> list[str]:
        """Notes from the workers for run.log (e.g. CUDA out-of-memory retries)."""
        ...

    def describe(self, analyses: list[dict]) -> dict:
        """Model, task and example facts for results.json."""
        ...

    def close(self) -> None:
        """Release workers (Ray actors, the cluster this executor started)."""
        ...
