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


class InputError(InterpError, ValueError):
    """An argument value that is not allowed (the message names the value and what is allowed)."""


class HooksAttachedError(InterpError, RuntimeError):
    """The model has hooks attached that a method would silently ignore or mix in."""


class RunDirectoryError(InterpError, ValueError):
    """An output directory that cannot hold this run (another run's, unrelated files, locked, unwritable)."""


class WriteError(InterpError, OSError):
    """A file that could not be written (disk full, no permission); the message names the file."""

    def __str__(self) -> str:  # OSError would prefix "[Errno N]"
        return str(self.strerror or (self.args[-1] if self.args else ""))


class ResultsError(InterpError, ValueError):
    """Results that cannot be reported as they are (non-finite values, no clean/corrupted gap)."""


class FileKindError(InterpError, ValueError):
    """A path that is not what it must be: a symbolic link where none is followed, a directory, FIFO or
    device where a regular file is read, a file over a size limit. The message names the path."""
