"""Caching: selective, position slices, memory estimates and refusal, streaming to disk with resume."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import interrupted_at

from interp.base.errors import HookNameError
from interp.model.cache import (
    CacheTooLargeError,
    DiskCache,
    cache_activations,
    estimate_cache_bytes,
    stream_cache,
)
from interp.model.hooks import active_hook_count
from interp.model.loading import load_model

NAMES = [
    "blocks.0.hook_resid_pre",
    "blocks.1.attn.hook_z",
    "blocks.1.attn.hook_pattern",
    "blocks.0.mlp.hook_post",
]


@pytest.fixture(scope="module")
def model(tiny_phi_dir):
    return load_model(tiny_phi_dir)


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(2, 140, (10, 7), generator=torch.Generator().manual_seed(0))


def test_estimate_equals_the_real_size(model, tokens):
    cache = cache_activations(model, tokens, NAMES)
    real = sum(t.numel() * t.element_size() for t in cache.values())
    assert estimate_cache_bytes(model, NAMES, *tokens.shape) == real


def test_refuses_over_budget_before_running(model, tokens):
    with pytest.raises(CacheTooLargeError, match=r"needs about .* MiB, over the budget"):
        cache_activations(model, tokens, NAMES, max_bytes=1000)
    assert active_hook_count(model) == 0


def test_position_slice(model, tokens):
    full = cache_activations(model, tokens, NAMES)
    last = cache_activations(model, tokens, NAMES, positions=[-1])
    assert torch.equal(last["blocks.1.attn.hook_z"], full["blocks.1.attn.hook_z"][:, [-1]])
    assert torch.equal(last["blocks.1.attn.hook_pattern"], full["blocks.1.attn.hook_pattern"][:, :, [-1]])


def test_mistyped_name_is_an_error_not_an_empty_cache(model, tokens):
    with pytest.raises(HookNameError, match="Did you mean"):
        cache_activations(model, tokens, ["blocks.0.attn.hook_zz"])


class TestStreaming:
    def test_streams_and_loads_lazily(self, model, tokens, tmp_path):
        disk = stream_cache(model, tokens, NAMES, tmp_path / "c", batch_size=4)
        assert len(disk) == 3 and disk.names == NAMES
        full = cache_activations(model, tokens, NAMES)
        for name in NAMES:
            assert torch.allclose(disk.load(name), full[name], atol=1e-6)
        assert disk.get("blocks.0.hook_resid_pre", 2).shape == (2, 7, 80)

    def test_resumes_after_interruption(self, model, tokens, tmp_path, monkeypatch):
        directory = tmp_path / "c"
        import interp.model.cache as cache_module

        real = cache_module.cache_activations
        monkeypatch.setattr(cache_module, "cache_activations", interrupted_at(2, real))
        with pytest.raises(KeyboardInterrupt):
            stream_cache(model, tokens, NAMES, directory, batch_size=4)
        assert len(json.loads((directory / "manifest.json").read_text())["shards"]) == 1
        monkeypatch.setattr(cache_module, "cache_activations", real)
        written_before = (directory / "shard-00000.safetensors").stat().st_mtime_ns
        disk = stream_cache(model, tokens, NAMES, directory, batch_size=4)
        assert len(disk) == 3
        assert (directory / "shard-00000.safetensors").stat().st_mtime_ns == written_before  # not redone
        assert torch.allclose(disk.load(NAMES[0]), real(model, tokens, NAMES)[NAMES[0]], atol=1e-6)
        assert not list(directory.glob(".*.tmp"))

    def test_refuses_a_different_run_in_the_same_directory(self, model, tokens, tmp_path):
        stream_cache(model, tokens, NAMES, tmp_path / "c", batch_size=4)
        with pytest.raises(ValueError, match="different tokens"):
            stream_cache(model, tokens, NAMES[:1], tmp_path / "c", batch_size=4)
        assert isinstance(DiskCache(tmp_path / "c").manifest, dict)

    @pytest.mark.parametrize("damage", [b"{", b"[]", b'{"names": []}'], ids=["truncated", "list", "partial"])
    def test_a_damaged_manifest_is_refused_by_name(self, model, tokens, tmp_path, damage):
        from interp.base.errors import InputError

        stream_cache(model, tokens, NAMES, tmp_path / "c", batch_size=4)
        (tmp_path / "c" / "manifest.json").write_bytes(damage)
        with pytest.raises(InputError, match="manifest.*use another directory"):
            stream_cache(model, tokens, NAMES, tmp_path / "c", batch_size=4)
        with pytest.raises(InputError, match="manifest"):
            len(DiskCache(tmp_path / "c"))

    def test_refuses_other_positions_in_the_same_directory(self, model, tokens, tmp_path, monkeypatch):
        """The fingerprint includes the kept positions: resuming with others must not mix shards."""
        import interp.model.cache as cache_module

        real = cache_module.cache_activations
        monkeypatch.setattr(cache_module, "cache_activations", interrupted_at(2, real))
        with pytest.raises(KeyboardInterrupt):
            stream_cache(model, tokens, NAMES, tmp_path / "c", batch_size=4, positions=slice(0, 2))
        monkeypatch.setattr(cache_module, "cache_activations", real)
        with pytest.raises(ValueError, match="positions"):
            stream_cache(model, tokens, NAMES, tmp_path / "c", batch_size=4, positions=[5])
        disk = stream_cache(model, tokens, NAMES, tmp_path / "c", batch_size=4, positions=slice(0, 2))
        assert disk.load(NAMES[0]).shape[1] == 2
