"""Hook names are validated with suggestions; caching removes its hooks even when a pass raises."""

from __future__ import annotations

import pytest
import torch

from interp.base.errors import HookNameError
from interp.model.cache import cache_activations
from interp.model.hooks import active_hook_count, match_hook_names, validate_hook_names
from interp.model.loading import load_model


@pytest.fixture(scope="module")
def model(tiny_phi_dir):
    return load_model(tiny_phi_dir)


def test_unknown_name_suggests_close_matches(model):
    with pytest.raises(HookNameError, match="Did you mean: blocks.0.hook_resid_pre"):
        validate_hook_names(model, ["blocks.0.hook_resid_pree"])


def test_resid_mid_explains_parallel_blocks(model):
    with pytest.raises(HookNameError, match="no resid_mid"):
        validate_hook_names(model, ["blocks.0.hook_resid_mid"])


def test_layer_out_of_range_says_the_range(model):
    with pytest.raises(HookNameError, match="layers 0..1"):
        validate_hook_names(model, ["blocks.7.hook_resid_pre"])


def test_pattern_matching(model):
    assert match_hook_names(model, r"blocks\.\d+\.attn\.hook_z$") == [
        "blocks.0.attn.hook_z",
        "blocks.1.attn.hook_z",
    ]
    with pytest.raises(HookNameError):
        match_hook_names(model, "hook_nothing")


def test_cache_keeps_only_named_activations_and_downcasts(model):
    tokens = torch.tensor([[2, 3, 4, 5]])
    cache = cache_activations(model, tokens, ["blocks.1.hook_resid_pre"], dtype=torch.bfloat16)
    assert list(cache) == ["blocks.1.hook_resid_pre"]
    assert cache["blocks.1.hook_resid_pre"].dtype == torch.bfloat16
    _, reference = model.run_with_cache(tokens)
    assert torch.allclose(
        cache["blocks.1.hook_resid_pre"].float(), reference["blocks.1.hook_resid_pre"], rtol=1e-2, atol=1e-2
    )  # bfloat16 keeps 8 significant bits


def test_hooks_removed_when_forward_raises(model):
    too_long = torch.zeros(1, 4, dtype=torch.long) + 10_000  # out of vocabulary: embedding raises
    with pytest.raises((IndexError, RuntimeError)):
        cache_activations(model, too_long, ["blocks.0.hook_resid_pre", "blocks.1.attn.hook_z"])
    assert active_hook_count(model) == 0
