"""Where an experiment's units run: `local` (this process) or `ray` (actors on a Ray cluster).

Both implement the same small interface (`n_pairs`, `map`, `messages`, `describe`, `close`), and the
runner writes every finished unit through the same atomic store whichever backend computed it.
"""

from __future__ import annotations

from interp.base.errors import InputError
from interp.runner.backends.base import Executor
from interp.runner.config import ExperimentConfig

BACKENDS = ("local", "ray")


def make_executor(name: str, config: ExperimentConfig, **options) -> Executor:
    """The executor for backend `name` ('local' or 'ray') and its options."""
    if name == "local":
        if options:
            raise InputError(f"the local backend takes no options, got {sorted(options)}")
        from interp.runner.backends.local import LocalExecutor

        return LocalExecutor(config)
    if name == "ray":
        from interp.runner.backends.ray_backend import RayExecutor

        return RayExecutor(config, **options)
    raise InputError(f"unknown backend {name!r}; allowed: {', '.join(BACKENDS)}")
