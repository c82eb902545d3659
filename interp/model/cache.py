"""Selective activation caching: validated names, position slices, memory estimates, disk streaming.

`cache_activations` keeps only the hooks you name (an unknown name is an error with suggestions;
transformer-lens silently returns an empty cache for a mistyped filter), optionally only some
positions and in a smaller dtype, and refuses up front when the estimate exceeds `max_bytes`.

`stream_cache` runs a whole token dataset batch by batch and writes each batch's activations as a
safetensors shard plus a JSON manifest, atomically, so an interrupted run resumes where it stopped
and a finished shard is never lost. `DiskCache` reads it back lazily, by hook and batch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Int
from torch import Tensor

from interp.base.errors import FileKindError, InputError
from interp.base.files import read_json, write_atomic
from interp.model.hooks import validate_hook_names
from interp.model.loading import HookedPhi

# a manifest lists one shard per batch: a million shards fit in far less
MAX_MANIFEST_BYTES = 256 << 20

# dims after `batch pos` (or, for patterns, after `batch`) by hook-name suffix
_SUFFIX_DIMS = {
    ("hook_q", "hook_k", "hook_v", "hook_z", "hook_rot_q", "hook_rot_k"): ("head", "d_head"),
    ("hook_result",): ("head", "d_model"),
    ("hook_pre", "hook_post", "mlp.in.hook_out", "mlp.out.hook_in"): ("d_mlp",),
    ("hook_scale",): ("one",),
    ("unembed.hook_out", "hook_unembed"): ("d_vocab",),
}


class CacheTooLargeError(MemoryError):
    """The requested cache would exceed the memory budget."""


def _per_position_width(model: HookedPhi, name: str) -> int:
    cfg = model.cfg
    sizes = {"head": cfg.n_heads, "d_head": cfg.d_head, "d_model": cfg.d_model, "d_mlp": cfg.d_mlp}
    sizes.update({"d_vocab": cfg.d_vocab, "one": 1})
    for suffixes, dims in _SUFFIX_DIMS.items():
        if name.endswith(suffixes):
            width = 1
            for dim in dims:
                width *= sizes[dim]
            return width
    return cfg.d_model


def estimate_cache_bytes(
    model: HookedPhi,
    names: Iterable[str],
    batch: int,
    n_pos: int,
    dtype: torch.dtype = torch.float32,
    n_kept_pos: int | None = None,
) -> int:
    """Bytes a cache of `names` takes for `batch` prompts of `n_pos` tokens (`n_kept_pos` kept)."""
    kept = n_pos if n_kept_pos is None else n_kept_pos
    itemsize = torch.tensor([], dtype=dtype).element_size()
    total = 0
    for name in names:
        if name.endswith(("hook_pattern", "hook_attn_scores")):
            total += batch * model.cfg.n_heads * kept * n_pos
        else:
            total += batch * kept * _per_position_width(model, name)
    return total * itemsize


def _select_positions(name: str, tensor: Tensor, positions: slice | list[int] | None) -> Tensor:
    if positions is None:
        return tensor
    axis = 2 if name.endswith(("hook_pattern", "hook_attn_scores")) else 1  # dest_pos for patterns
    index = [slice(None)] * tensor.ndim
    index[axis] = positions
    return tensor[tuple(index)]


def cache_activations(
    model: HookedPhi,
    tokens: Int[Tensor, "batch pos"],
    names: Iterable[str],
    *,
    dtype: torch.dtype | None = None,
    positions: slice | list[int] | None = None,
    max_bytes: int | None = None,
) -> dict[str, Tensor]:
    """Run one forward pass and keep only the named activations (detached, optionally downcast).

    `positions` keeps only those positions (destination positions for attention patterns).
    `max_bytes` refuses, before running, a cache whose estimate is larger. Hooks are removed when
    the pass ends, also when it raises.
    """
    names = validate_hook_names(model, names)
    if max_bytes is not None:
        n_pos = tokens.shape[1]
        kept = (
            len(range(n_pos)[positions])
            if isinstance(positions, slice)
            else (len(positions) if positions else None)
        )
        estimate = estimate_cache_bytes(model, names, tokens.shape[0], n_pos, dtype or torch.float32, kept)
        if estimate > max_bytes:
            raise CacheTooLargeError(
                f"Caching {len(names)} hooks for {tokens.shape[0]} x {n_pos} tokens needs about "
                f"{estimate / 1024**2:.1f} MiB, over the budget of {max_bytes / 1024**2:.1f} MiB. Cache fewer "
                "hooks or positions, use dtype=torch.bfloat16, or stream_cache() to disk."
            )
    cache: dict[str, Tensor] = {}

    def saver(name: str):
        # keyed by the requested name: an alias (hook_resid_pre) fires as its target (hook_in)
        def save(tensor: Tensor, *, hook) -> None:
            kept = _select_positions(name, tensor.detach(), positions)
            cache[name] = kept.to(dtype) if dtype is not None else kept.clone()

        return save

    with torch.no_grad(), model.hooks(fwd_hooks=[(name, saver(name)) for name in names]):
        model(tokens.to(model.cfg.device))
    missing = [name for name in names if name not in cache]
    if missing:  # a hook point that exists but this forward never reached
        raise RuntimeError(f"These hooks did not fire during the forward pass: {missing}")
    return cache


@dataclass
class DiskCache:
    """A streamed cache on disk: `manifest.json` and one safetensors shard per batch."""

    directory: Path

    @property
    def manifest(self) -> dict:
        return _read_manifest(self.directory / "manifest.json")

    @property
    def names(self) -> list[str]:
        return self.manifest["names"]

    def __len__(self) -> int:
        return len(self.manifest["shards"])

    def get(self, name: str, batch_index: int) -> Tensor:
        """One hook's activations for one batch, read without loading anything else."""
        from safetensors import safe_open

        shard = self.manifest["shards"][batch_index]
        with safe_open(self.directory / shard["file"], framework="pt") as handle:
            return handle.get_tensor(name)

    def load(self, name: str) -> Tensor:
        """One hook's activations for the whole dataset (batches concatenated)."""
        return torch.cat([self.get(name, i) for i in range(len(self))])


def _read_manifest(path: Path) -> dict:
    """A cache directory's manifest.json, read as a regular file holding a JSON object, else InputError."""
    try:
        manifest = read_json(path, MAX_MANIFEST_BYTES, "cache manifest")
    except FileKindError as error:
        raise InputError(f"{error} The cache directory is damaged: use another directory.") from None
    if not isinstance(manifest, dict) or not {"fingerprint", "names", "shards"} <= set(manifest):
        raise InputError(
            f"{path} is not an interp cache manifest (a JSON object with fingerprint, names and shards); "
            "use another directory."
        )
    return manifest


def _describe_positions(positions: slice | list[int] | None) -> list | None:
    """A JSON-able description of a position selection (part of what a cache directory is of)."""
    if positions is None:
        return None
    if isinstance(positions, slice):
        return ["slice", positions.start, positions.stop, positions.step]
    return ["list", [int(p) for p in positions]]


def _fingerprint(
    tokens: Tensor, names: list[str], dtype: torch.dtype, batch_size: int, positions: slice | list[int] | None
) -> str:
    """Everything a shard's content depends on: tokens, hooks, dtype, batch size and kept positions."""
    digest = hashlib.sha256(tokens.cpu().numpy().tobytes())
    described = [names, str(dtype), batch_size, list(tokens.shape), _describe_positions(positions)]
    digest.update(json.dumps(described).encode())
    return digest.hexdigest()[:16]


def stream_cache(
    model: HookedPhi,
    tokens: Int[Tensor, "batch pos"],
    names: Iterable[str],
    directory: str | Path,
    *,
    batch_size: int = 32,
    dtype: torch.dtype = torch.float32,
    positions: slice | list[int] | None = None,
) -> DiskCache:
    """Cache `names` for every row of `tokens` to `directory`, resuming a previous partial run.

    A run with different tokens, names, dtype, batch size or positions in the same directory is refused.
    """
    from safetensors.torch import save

    names = validate_hook_names(model, names)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint(tokens, names, dtype, batch_size, positions)
    manifest_path = directory / "manifest.json"
    manifest = {"fingerprint": fingerprint, "names": names, "dtype": str(dtype), "batch_size": batch_size}
    manifest.update({"n_rows": tokens.shape[0], "shards": []})
    if manifest_path.exists():
        previous = _read_manifest(manifest_path)
        if previous["fingerprint"] != fingerprint:
            raise InputError(
                f"{directory} holds a cache of different tokens, hooks, dtype, batch size or positions "
                f"(fingerprint {previous['fingerprint']} vs {fingerprint}); use another directory."
            )
        manifest = previous
    done = len(manifest["shards"])
    for index, start in enumerate(range(0, tokens.shape[0], batch_size)):
        if index < done:
            continue
        batch = cache_activations(
            model, tokens[start : start + batch_size], names, dtype=dtype, positions=positions
        )
        file = f"shard-{index:05d}.safetensors"
        write_atomic(directory / file, save({k: v.contiguous().cpu() for k, v in batch.items()}))
        manifest["shards"].append({"file": file, "rows": [start, min(start + batch_size, tokens.shape[0])]})
        write_atomic(manifest_path, json.dumps(manifest, indent=1))
    return DiskCache(directory)
