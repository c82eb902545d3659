"""Closeness relative to the values compared: what every engine test holds float32 results to."""

from __future__ import annotations

import torch


def max_rel_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| over max |expected| (1 where `expected` is all zero, so the difference
    itself is what is held small)."""
    scale = expected.abs().max().item() or 1.0
    return (actual - expected).abs().max().item() / scale


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5, what: object = "") -> None:
    """`actual` equals `expected` to `rel` of the largest value compared (shapes equal)."""
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    diff = max_rel_diff(actual, expected)
    assert diff <= rel, (what, f"max |diff| is {diff:.2e} of max |expected|, allowed {rel:.0e}")
