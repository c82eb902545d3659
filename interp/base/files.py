"""Files read as files, and written atomically, never through a symbolic link.

- `read_regular`: the bytes of a regular file, at most a stated size. A directory, a FIFO (which would
  block forever), a device such as /dev/zero (which never ends) is refused before anything is read.
- `read_json`: the JSON value held by such a file; damage (not UTF-8, not JSON, nested too deep) is a
  `FileKindError` naming the file, so every reader of a JSON file gives the same kind of error.
- `open_no_follow`: a file descriptor for a run file, refused when the path is a symbolic link (so a link
  planted in a shared directory cannot make a run write elsewhere) or not a regular file.
- `write_atomic`: a reader sees the old file or the new one, never half of one; the rename replaces a link
  at the path itself, never the file it points to.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path

from interp.base.errors import FileKindError, WriteError


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_regular(path: str | os.PathLike, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of the regular file at `path` (a link to one is followed), refusing anything larger than
    `max_bytes` and anything that is not a regular file (`FileKindError`; `FileNotFoundError` passes)."""
    path = Path(path)
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat refuses it just after
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except IsADirectoryError:
        raise FileKindError(f"{what} {path} is a directory; give a regular file.") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileKindError(f"{what} {path} is {_kind(info.st_mode)}; give a regular file.")
        if info.st_size > max_bytes:
            raise FileKindError(
                f"{what} {path} is {info.st_size:,} bytes, more than the limit of {max_bytes:,} bytes."
            )
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)  # a file that grows while read is held to the limit too
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise FileKindError(f"{what} {path} is more than the limit of {max_bytes:,} bytes.")
    return data


def read_json(path: str | os.PathLike, max_bytes: int, what: str = "file") -> object:
    """The JSON value of the regular file at `path` (read with `read_regular`); a file that is not UTF-8
    JSON is a `FileKindError` naming the file and the parser's complaint (`FileNotFoundError` passes)."""
    data = read_regular(path, max_bytes, what)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise FileKindError(f"{what} {path} is not valid JSON ({type(error).__name__}: {error}).") from None


def open_no_follow(path: str | os.PathLike, flags: int, what: str = "file", mode: int = 0o644) -> int:
    """`os.open(path, flags)` that refuses a symbolic link at `path` and anything not a regular file.

    Raises `FileKindError` naming the path (and where a link points); other `OSError`s pass through.
    """
    path = Path(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise FileKindError(
                f"{what} {path} is a symbolic link (to {os.readlink(path)}); interp never opens a run file "
                "through a link, so that nothing outside the run directory is written. Remove the link."
            ) from None
        if error.errno in (errno.EISDIR, errno.ENXIO):  # ENXIO: a FIFO opened for writing, no reader
            kind = "a directory" if error.errno == errno.EISDIR else "a FIFO (named pipe)"
            raise FileKindError(f"{what} {path} is {kind}; it must be a regular file.") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise FileKindError(f"{what} {path} is {_kind(info.st_mode)}; it must be a regular file.")
    os.set_blocking(fd, True)
    return fd


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` to `path` through a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise WriteError(error.errno, f"cannot write {path}: {error.strerror}") from None
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results and reports are meant to be shared
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:  # disk full, quota, permissions: name the file, leave no temporary behind
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(error.errno, f"cannot write {path}: {error.strerror}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
