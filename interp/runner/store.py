"""The run directory: owned by one config, locked while a run writes, every unit checked before it is used.

    OUT/run.json               the manifest: config hash, interp version, when the run began
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
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

from interp.base.errors import RunDirectoryError
from interp.base.files import write_atomic
from interp.base.version import __version__
from interp.runner.config import ExperimentConfig, to_toml
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


def config_hash(config: ExperimentConfig) -> str:
    """The first 16 hex digits of the SHA-256 of the resolved config's TOML."""
    return hashlib.sha256(to_toml(config).encode()).hexdigest()[:16]


def _checksum(values: torch.Tensor) -> str:
    return hashlib.sha256(values.contiguous().numpy().tobytes()).hexdigest()


class RunLog:
    """Appends timestamped lines to run.log (never fails the run: a log line is not worth losing work)."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, message: str) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        try:
            with self.path.open("a") as handle:
                handle.write(f"{stamp} {message}\n")
        except OSError:
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

    # --- opening: checks before anything is written ---

    def open(self, config: ExperimentConfig, *, resume: bool, force: bool) -> str:
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
        self._lock()
        digest = config_hash(config)
        present = {p.name for p in out.iterdir()}
        foreign = sorted(n for n in present - RUN_FILES if not (n.startswith(".") and n.endswith(".tmp")))
        if foreign:
            self.close()
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise RunDirectoryError(
                f"--out {out} holds files that are not part of an interp run ({shown}); choose an empty "
                "or new directory (nothing was written)."
            )
        has_run = bool(present & (RUN_FILES - {"run.log", LOCK}))
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

    def _check_owner(self, config: ExperimentConfig, digest: str, resume: bool) -> None:
        out = self.out
        manifest_path = out / MANIFEST
        if not manifest_path.exists():
            raise RunDirectoryError(
                f"--out {out} holds run files but no {MANIFEST}, so nothing says which config they belong "
                f"to; choose another --out, or pass --force to clear the run files and start again{PYTHON_SPELLING}"
            )
        try:
            manifest = json.loads(manifest_path.read_text())
            previous = str(manifest["config_hash"])
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
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

    def _changed_fields(self, config: ExperimentConfig) -> str:
        try:
            old = tomllib.loads((self.out / RESOLVED).read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            return f"unknown: {RESOLVED} is missing or damaged"
        new = tomllib.loads(to_toml(config))
        return ", ".join(sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))) or "none"

    def _clear(self) -> None:
        for name in RUN_FILES - {LOCK}:
            path = self.out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        self.log("--force: cleared the previous run files")

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of writes that were killed midway (`.<name>.<random>.tmp`)."""
        for path in [*self.out.glob(".*.tmp"), *self.out.glob("units/*/.*.tmp")]:
            path.unlink(missing_ok=True)

    # --- the lock ---

    def _lock(self) -> None:
        path = self.out / LOCK
        handle = open(path, "a+")  # noqa: SIM115 - held open for the run's lifetime
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

    def begin(self, config: ExperimentConfig, digest: str) -> None:
        """Record which config owns the directory; called once the model and prompts have loaded."""
        write_atomic(self.out / RESOLVED, f"# config hash: {digest}\n" + to_toml(config))
        manifest = {
            "config_hash": digest,
            "interp_version": __version__,
            "began": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        if not (self.out / MANIFEST).exists():
            write_atomic(self.out / MANIFEST, json.dumps(manifest, indent=1))

    def unit_path(self, label: str, batch: int | None) -> Path:
        """Where unit (label, batch) lives; the label is checked and the path proven inside the run."""
        check_label(label)
        name = "all.safetensors" if batch is None else f"batch-{batch:05d}.safetensors"
        path = self.out / "units" / label / name
        if not path.resolve().is_relative_to(self.out.resolve()):
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
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                values = handle.get_tensor("values")
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
        except Exception as error:  # truncated or foreign files fail in many ways inside safetensors
            problem = f"it cannot be read ({type(error).__name__})"
        self.warn(f"recomputing {path}: {problem}")
        return None

    def warn(self, message: str) -> None:
        from interp.base.console import warn

        warn(message)
        self.log(f"warning: {message}")
