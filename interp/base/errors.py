"""Exceptions raised for bad input; each message says what is wrong and what is allowed."""

from __future__ import annotations


class InterpError(Exception):
    """Base class of every error `interp` raises on purpose."""


class ModelSourceError(InterpError, ValueError):
    """A model source that cannot be used: missing, not Phi, no tokenizer, not downloadable."""


class UnsafeDtypeError(InterpError, ValueError):
    """A dtype that would give silently wrong numbers for Phi (float16 attention overflows)."""


class HookNameError(InterpError, KeyError):
    """A hook name the model does not have."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""
