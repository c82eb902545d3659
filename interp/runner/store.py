"""The run directory: owned by one config, locked while a run writes, every unit checked before it is used.

    OUT/run.json               the manifest: config hash, interp version, when the run began, the
                               torch CPU thread count every unit of the run is computed with
    OUT/config.resolved.toml   the resolved config (first line: its hash)
    OUT/run.log                one timestamped line per event, errors included
    OUT/.lock                  held (flock) by the process writing the directory; holds its pid
    OUT/units/<label>/batch-NNNNN.safetensors (or all.safetensors): a finished unit's values

Rules:

- The manifest is written before any unit, and only after the model and the prompts loaded: a run
  that fails to start leaves nothing that blocks the corrected command.
- A directory with a manifest belongs to that config: continuing needs `--resume` and the same
  config; another config is refused naming the differing fields.
- A directory with run files but no manifest (or a damaged one) is refused; `--force` clears the run
  files. A directory with files that are not run files is refused even with `--force`.
- A unit is used only when its metadata carries this run's config hash and its values match their
  checksum; anything else is recomputed, with a warning that names the file.
- Labels are checked identifiers, and every path is checked to stay inside the run directory.
- Nothing opens a run file through a symbolic link: a link among the run files (the manifest, the
  resolved config, the log, the lock, results, tensors, report, `units` or a unit folder) is refused
  naming it, before anything is written; files are opened with O_NOFOLLOW and written by rename, which
  replaces a link rather than the file it points to. A unit file that is a link is not trusted: it is
  recomputed with a warning, and the new unit replaces the link.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import shutil
import struct
import tomllib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load, save

from interp.base.errors import FileKindError, RunDirectoryError
from interp.base.files import open_no_follow, write_atomic
from interp.base.schema import Strict
from interp.base.version import __version__
from interp.runner.config import ExperimentConfig, named_inputs, to_toml
from interp.runner.labels import check_label
from interp.runner.registry import Computed

MANIFEST = "run.json"
RESOLVED = "config.resolved.toml"
LOCK = ".lock"
RUN_FILES = {
    MANIFEST,
    RESOLVED,
    "run.log",
    LOCK,
    "units",
    "results.json",
    "tensors.safetensors",
    "report.html",
}


def input_fingerprints(config: Strict) -> dict[str, str]:
    """Per file or directory the config names (`config.named_inputs`): a file's SHA-256 (a labels file,
    a corpus file), a directory's listing with each file's size and modification time (a dictionary's
    weights: hashing gigabytes at every start would cost more than the run's first unit); missing: "missing"."""
    out = {}
    for name in named_inputs(config):
        path = Path(name)
        if path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            out[name] = digest.hexdigest()
        elif path.is_dir():
            entries = sorted(
                (str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns)
                for f in path.rglob("*")
                if f.is_file()
            )
            out[name] = hashlib.sha256(json.dumps(entries).encode()).hexdigest()
        else:
            out[name] = "missing"
    return out


def owning_hash(resolved: str, inputs: dict[str, str]) -> str:
    """The first 16 hex digits of the SHA-256 of a resolved config's text and the fingerprints of the
    files it names (a changed labels file or dictionary is a changed config: `--resume` refuses it)."""
    text = resolved + (f"\n# inputs: {json.dumps(inputs, sort_keys=True)}" if inputs else "")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_hash(config: ExperimentConfig) -> str:
    """The hash that owns an experiment's run directory (`owning_hash` of its resolved TOML)."""
    return owning_hash(to_toml(config), input_fingerprints(config))


def _checksum(values: torch.Tensor) -> str:
    return hashlib.sha256(values.contiguous().numpy().tobytes()).hexdigest()


def read_run_file(path: Path) -> bytes:
    """A run file's bytes, never read through a symbolic link (`FileKindError`)."""
    fd = open_no_follow(path, os.O_RDONLY, what="run file")
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


class RunLog:
    """Appends timestamped lines to run.log (never fails the run: a log line is not worth losing work).

    Never through a symbolic link: a link planted after the run directory was checked gets no line."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, message: str) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        try:
            fd = open_no_follow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, what="run log")
            with os.fdopen(fd, "a", encoding="utf-8") as handle:
                handle.write(f"{stamp} {message}\n")
        except (OSError, FileKindError):
            pass


# the advice names the command line's flags; from Python the same choices are run_experiment's arguments
PYTHON_SPELLING = " (from Python: run_experiment(..., resume=True), force=True, or another out directory)."


@dataclass
class RunDirectory:
    """One run's directory; `open` checks and locks it, `begin` writes the manifest."""

    out: Path

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.log = RunLog(self.out / "run.log")
        self._lock_handle = None
        self.run_files = set(RUN_FILES)  # another kind of run (interp train) names its own
        self.inputs: dict[str, str] | None = None  # fingerprints of the files the config names (`digest`)

    def resolved(self, config: Strict) -> str:
        """The resolved config's text, whose hash owns the directory (another kind of run gives its own)."""
        return to_toml(config)

    def digest(self, config: Strict) -> str:
        """The hash that owns the directory: of the resolved config and the files it names (their
        fingerprints are taken once, here, and kept for the manifest)."""
        self.inputs = input_fingerprints(config)
        return owning_hash(self.resolved(config), self.inputs)

    # --- opening: checks before anything is written ---

    def open(self, config: Strict, *, resume: bool, force: bool) -> str:
        """Check that this directory may hold this run, lock it, and clear stale temporary files.

        Returns the config hash. Writes nothing but the lock file (and, with `force`, clears run files).
        """
        out = self.out
        if out.exists() and not out.is_dir():
            raise RunDirectoryError(f"--out {out} is a file; give a directory (it is created if missing).")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunDirectoryError(f"cannot create --out {out}: {error.strerror}") from None
        if not os.access(out, os.W_OK | os.X_OK):
            raise RunDirectoryError(f"--out {out} is not writable by this user; choose another directory.")
        self._refuse_links()
        self._lock()
        digest = self.digest(config)
        present = {p.name for p in out.iterdir()}
        foreign = sorted(
            n for n in present - self.run_files if not (n.startswith(".") and n.endswith(".tmp"))
        )
        if foreign:
            self.close()
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise RunDirectoryError(
                f"--out {out} holds files that are not part of an interp run ({shown}); choose an empty "
                "or new directory (nothing was written)."
            )
        has_run = bool(present & (self.run_files - {"run.log", LOCK}))
        if has_run:
            try:
                self._check_owner(config, digest, resume)
            except RunDirectoryError:
                if not force:
                    self.close()
                    raise
                self._clear()
        self._remove_stale_temporaries()
        return digest

    def _check_owner(self, config: Strict, digest: str, resume: bool) -> None:
        out = self.out
        manifest_path = out / MANIFEST
        if not manifest_path.exists():
            raise RunDirectoryError(
                f"--out {out} holds run files but no {MANIFEST}, so nothing says which config they belong "
                f"to; choose another --out, or pass --force to clear the run files and start again{PYTHON_SPELLING}"
            )
        try:
            manifest = json.loads(read_run_file(manifest_path))
            previous = str(manifest["config_hash"])
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):  # FileKindError included
            raise RunDirectoryError(
                f"{manifest_path} is damaged; pass --force to clear the run files and start again{PYTHON_SPELLING}"
            ) from None
        if previous != digest:
            changed = self._changed_fields(config)
            raise RunDirectoryError(
                f"{out} holds a run of another config (hash {previous}, this config {digest}; different: "
                f"{changed}). Use the original config with --resume, another --out, or --force to clear "
                f"it{PYTHON_SPELLING}"
            )
        if not resume:
            raise RunDirectoryError(
                f"{out} already holds a run of this config (hash {digest}). Pass --resume to continue it, "
                f"--force to start it again, or choose another --out{PYTHON_SPELLING}"
            )

    def _changed_fields(self, config: Strict) -> str:
        try:
            old = tomllib.loads(read_run_file(self.out / RESOLVED).decode())
        except (OSError, ValueError, UnicodeDecodeError):  # FileKindError included
            return f"unknown: {RESOLVED} is missing or damaged"
        new = tomllib.loads(self.resolved(config))
        fields = ", ".join(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)))
        if fields:
            return fields
        try:
            before = json.loads(read_run_file(self.out / MANIFEST)).get("inputs", {})
        except (OSError, ValueError, AttributeError, FileKindError):
            before = {}
        now = input_fingerprints(config)
        files = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if files:
            return "the contents of " + ", ".join(files) + " (files the config names)"
        return "none"

    def _clear(self) -> None:
        for name in self.run_files - {LOCK}:
            path = self.out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        self.log("--force: cleared the previous run files")

    def _links(self) -> list[Path]:
        """Run files, `units` and unit folders that are symbolic links."""
        links = [self.out / name for name in sorted(self.run_files) if (self.out / name).is_symlink()]
        units = self.out / "units"
        if units.is_dir() and not units.is_symlink():
            links += [path for path in sorted(units.iterdir()) if path.is_symlink()]
        return links

    def _refuse_links(self) -> None:
        links = self._links()
        if links:
            shown = ", ".join(f"{path} -> {os.readlink(path)}" for path in links[:5])
            raise RunDirectoryError(
                f"--out {self.out} holds symbolic links where run files go ({shown}); interp never opens a "
                "run file through a link, so that nothing outside --out is written. Remove the links "
                "(--force does not), or choose another --out (nothing was written)."
            )

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of writes that were killed midway (`.<name>.<random>.tmp`)."""
        for path in [*self.out.glob(".*.tmp"), *self.out.glob("units/*/.*.tmp")]:
            path.unlink(missing_ok=True)

    # --- the lock ---

    def _lock(self) -> None:
        path = self.out / LOCK
        try:
            fd = open_no_follow(path, os.O_RDWR | os.O_CREAT, what="lock file")
        except FileKindError as error:
            raise RunDirectoryError(f"--out {self.out}: {error}") from None
        handle = os.fdopen(fd, "r+")  # held open for the run's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                handle.close()
                raise
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunDirectoryError(
                f"--out {self.out} is in use by another interp run (pid {holder}); wait for it to finish "
                "or choose another --out."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle

    def close(self) -> None:
        """Release the lock (a killed process's lock is released by the operating system)."""
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    # --- writing ---

    def threads(self) -> int | None:
        """The torch CPU thread count this run's units are computed with (recorded when it began; None for
        a new run, or one begun by a version of interp that did not record it)."""
        try:
            threads = json.loads(read_run_file(self.out / MANIFEST)).get("torch_threads")
        except (OSError, ValueError, AttributeError, FileKindError):
            return None
        return threads if isinstance(threads, int) and not isinstance(threads, bool) and threads > 0 else None

    def begin(self, config: Strict, digest: str, threads: int) -> None:
        """Record which config owns the directory and the thread count its units are computed with
        (float sums depend on how work is split over threads, so a resumed run keeps the count it began
        with, whichever backend); called once the model and prompts have loaded."""
        write_atomic(self.out / RESOLVED, f"# config hash: {digest}\n" + self.resolved(config))
        manifest = {
            "config_hash": digest,
            "interp_version": __version__,
            "began": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "torch_threads": threads,
            "inputs": self.inputs if self.inputs is not None else input_fingerprints(config),
        }
        if not (self.out / MANIFEST).exists():
            write_atomic(self.out / MANIFEST, json.dumps(manifest, indent=1))

    def unit_path(self, label: str, batch: int | None) -> Path:
        """Where unit (label, batch) lives; the label is checked and the path proven inside the run."""
        check_label(label)
        name = "all.safetensors" if batch is None else f"batch-{batch:05d}.safetensors"
        path = self.out / "units" / label / name
        for folder in (path.parent.parent, path.parent):  # a linked folder would send the unit elsewhere
            if folder.is_symlink():
                raise RunDirectoryError(
                    f"{folder} is a symbolic link (to {os.readlink(folder)}); interp never writes a run "
                    "file through a link. Remove it, or choose another --out."
                )
        if not path.parent.resolve().is_relative_to(self.out.resolve()):
            raise RunDirectoryError(f"unit path {path} would leave --out {self.out}")
        return path

    def save_unit(self, label: str, batch: int | None, computed: Computed, digest: str) -> None:
        """Write a unit's values atomically, with this run's config hash and the values' checksum."""
        values = computed.values.contiguous().float().cpu()
        meta = {
            "dims": json.dumps(list(computed.dims)),
            "labels": json.dumps(computed.labels or {}),
            "extra": json.dumps(computed.extra or {}),
            "config_hash": digest,
            "sha256": _checksum(values),
        }
        write_atomic(self.unit_path(label, batch), save({"values": values}, metadata=meta))

    def load_unit(self, label: str, batch: int | None, digest: str) -> Computed | None:
        """The unit, or None (with a warning in run.log naming the file) if it is missing or not trusted."""
        path = self.unit_path(label, batch)
        if not path.exists() and not path.is_symlink():
            return None
        try:
            data = read_run_file(path)  # O_NOFOLLOW: a link is refused here, not read
            meta, values = _unit_metadata(data), load(data)["values"]
            problem = None
            if meta.get("config_hash") != digest:
                problem = f"it belongs to config {meta.get('config_hash')!r}, not {digest}"
            elif meta.get("sha256") != _checksum(values):
                problem = "its values do not match their checksum (damaged)"
            else:
                return Computed(
                    tuple(json.loads(meta["dims"])),
                    values,
                    json.loads(meta["labels"]) or None,
                    json.loads(meta.get("extra", "{}")) or None,
                )
        except FileKindError:  # a link, or no regular file: replaced by the recomputed unit
            problem = "it is a symbolic link or not a regular file, so it is not trusted"
            if path.is_symlink():
                problem = f"it is a symbolic link (to {os.readlink(path)}), so it is not trusted"
        except Exception as error:  # truncated or foreign files fail in many ways inside safetensors
            problem = f"it cannot be read ({type(error).__name__})"
        self.warn(f"recomputing {path}: {problem}")
        return None

    def warn(self, message: str) -> None:
        from interp.base.console import warn

        warn(message)
        self.log(f"warning: {message}")


def _unit_metadata(data: bytes) -> dict:
    """The `__metadata__` of a safetensors file's header (8 bytes of length, then JSON)."""
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise ValueError("the header is longer than the file")
    return json.loads(data[8 : 8 + length]).get("__metadata__") or {}
