"""Activations with known sparse features (Sharkey et al. 2022's setting at CPU size)."""

from __future__ import annotations

import torch
from torch import Tensor


def unit_directions(n_features: int = 64, d: int = 32, seed: int = 1234) -> Tensor:
    """`n_features` random unit vectors in `d` dimensions: the ground-truth features (the default seed
    differs from dictionaries' initialisation seed 0, whose first rows would otherwise be these)."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(n_features, d, generator=generator)
    return directions / directions.norm(dim=-1, keepdim=True)


def sparse_codes(n: int, n_features: int = 64, active: float = 3.0, seed: int = 1) -> Tensor:
    """[n, n_features] codes: each feature on with probability active / n_features (about `active`
    per sample), with a magnitude uniform in [0.5, 1.5] when on."""
    generator = torch.Generator().manual_seed(seed)
    on = torch.rand(n, n_features, generator=generator) < active / n_features
    magnitude = 0.5 + torch.rand(n, n_features, generator=generator)
    return on * magnitude


def recovery(directions: Tensor, decoder_rows: Tensor) -> float:
    """Mean over true features of the best cosine with any decoder row."""
    rows = decoder_rows.detach() / decoder_rows.detach().norm(dim=-1, keepdim=True)
    return float((directions @ rows.T).max(-1).values.mean())
