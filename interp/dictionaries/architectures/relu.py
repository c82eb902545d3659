"""ReLU + L1 (SAELens's `standard`): `acts = ReLU(pre)`, penalty `l1_coefficient * sum_i acts_i * ||W_dec[i]||`.

Weighting each latent's activation by its decoder row's norm (Anthropic, "Towards Monosemanticity"
2023 / April 2024 update) makes the penalty invariant to trading encoder scale for decoder scale, so
the decoder is not kept at unit norm. The coefficient ramps up linearly over `l1_warmup_steps`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.base.errors import InputError
from interp.dictionaries.base import Dictionary, DictionaryConfig, warmup_factor
from interp.dictionaries.registry import register_architecture


@dataclass
class ReLUConfig(DictionaryConfig):
    l1_coefficient: float = 1.0
    """Weight of the L1 penalty relative to the squared error (summed over dims, mean over tokens)."""
    l1_warmup_steps: int = 0
    """Steps over which the L1 coefficient ramps linearly from 0 to `l1_coefficient`."""

    architecture = "relu"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.l1_coefficient < 0 or self.l1_warmup_steps < 0:
            raise InputError("l1_coefficient and l1_warmup_steps must be >= 0.")


@register_architecture
class ReLUDictionary(Dictionary):
    config_class = ReLUConfig
    unit_norm_decoder = False
    cfg: ReLUConfig

    def activate(self, pre: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        return torch.relu(pre)

    def extra_losses(
        self,
        pre: Float[Tensor, "token d_sae"],
        acts: Float[Tensor, "token d_sae"],
        out: Float[Tensor, "token d_out"],
        target: Float[Tensor, "token d_out"],
        dead: Bool[Tensor, " d_sae"],
        step: int,
    ) -> dict[str, Tensor]:
        coefficient = self.cfg.l1_coefficient * warmup_factor(step, self.cfg.l1_warmup_steps)
        penalty = (acts * self.W_dec.norm(dim=-1)).sum(-1).mean()
        return {"l1": coefficient * penalty}
