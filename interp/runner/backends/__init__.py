"""Where an experiment's units run: `local` (this process) or `ray` (actors on a Ray cluster).

Both implement the same small interface (`n_pairs`, `map`, `messages`, `describe`, `close`), and the
runner writes every finished unit through the same atomic store whichever backend computed it. Both
compute with the same torch CPU thread count (the run's, recorded in its manifest), so a unit's values
do not depend on the backend, and both raise a user error (an `InterpError`) as itself: exit 2 with
`error: ...` from the command line, whichever backend.
"""

from __future__ import annotations

from interp.base.errors import InputError
from interp.runner.backends.base import Executor
from interp.runner.config import ExperimentConfig

BACKENDS = ("local", "ray")


def make_executor(name: str, config: ExperimentConfig, threads: int | None = None, **options) -> Executor:
    """The executor for backend `name` ('local' or 'ray') and its options; `threads`: torch's CPU thread
    count for computing units (None: this process's current count)."""
    if name == "local":
        if options:
            raise InputError(f"the local backend takes no options, got {sorted(options)}")
        from interp.runner.backends.local import LocalExecutor

        return LocalExecutor(config, threads=threads)
    if name == "ray":
        from interp.runner.backends.ray_backend import RayExecutor

        return RayExecutor(config, threads=threads, **options)
    raise InputError(f"unknown backend {name!r}; allowed: {', '.join(BACKENDS)}")
