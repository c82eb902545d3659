"""The run directory: its config record, its log, and its units (one file per finished unit, written atomically).

OUT/config.resolved.toml   first line: the hash of the resolved config that owns the directory
OUT/run.log                one timestamped line per event
OUT/units/<label>/batch-NNNNN.safetensors (or all.safetensors): a unit's per-prompt values
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tomllib
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from interp.base.files import write_atomic
from interp.runner.config import ConfigError, ExperimentConfig, to_toml
from interp.runner.registry import Computed
from interp.runner.worker import Plan


def config_hash(config: ExperimentConfig) -> str:
    """The first 16 hex digits of the SHA-256 of the resolved config's TOML."""
    return hashlib.sha256(to_toml(config).encode()).hexdigest()[:16]


class RunLog:
    """Appends timestamped lines to run.log."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, message: str) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        with self.path.open("a") as handle:
            handle.write(f"{stamp} {message}\n")


def prepare_out_dir(config: ExperimentConfig, out: Path, resume: bool) -> str:
    """Create or check the output directory; refuse to mix runs."""
    out.mkdir(parents=True, exist_ok=True)
    digest = config_hash(config)
    resolved = out / "config.resolved.toml"
    if resolved.exists():
        previous = resolved.read_text()
        previous_hash = previous.splitlines()[0].removeprefix("# config hash: ").strip()
        if not resume:
            raise ConfigError(
                f"{out} already holds a run (config hash {previous_hash}). Pass --resume to continue it, "
                "or choose another --out."
            )
        if previous_hash != digest:
            old = tomllib.loads(previous)
            new = tomllib.loads(to_toml(config))
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ConfigError(
                f"Cannot resume {out}: the config changed (hash {previous_hash} -> {digest}; "
                f"different: {', '.join(changed)}). Resume with the original config or use another --out."
            )
    write_atomic(resolved, f"# config hash: {digest}\n" + to_toml(config))
    return digest


def unit_path(out: Path, label: str, batch: int | None) -> Path:
    """Where unit (label, batch) lives in the run directory."""
    name = "all.safetensors" if batch is None else f"batch-{batch:05d}.safetensors"
    return out / "units" / label / name


def save_unit(path: Path, computed: Computed) -> None:
    """Write a unit's values and dims atomically."""
    meta = {"dims": json.dumps(list(computed.dims)), "labels": json.dumps(computed.labels or {})}
    write_atomic(path, save({"values": computed.values.contiguous().float().cpu()}, metadata=meta))


def load_unit(path: Path) -> Computed:
    """Read a unit written by `save_unit`."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        meta = handle.metadata()
    values = load_file(path)["values"]
    return Computed(tuple(json.loads(meta["dims"])), values, json.loads(meta["labels"]) or None)


def gather(out: Path, label: str, plan: Plan) -> Computed:
    """An analysis's units concatenated over batches in plan order."""
    batches = sorted({b for lab, b in plan.units if lab == label})
    if batches == [None]:
        return load_unit(unit_path(out, label, None))
    parts = [load_unit(unit_path(out, label, b)) for b in batches]
    return Computed(parts[0].dims, torch.cat([p.values for p in parts], dim=-1), parts[0].labels)
