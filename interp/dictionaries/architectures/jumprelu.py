"""JumpReLU (Rajamanoharan et al. 2024, "Jumping Ahead"): `acts = ReLU(pre) * (pre > theta)` with a
learnt float32 threshold `theta` per latent, trained with an L0 penalty `l0_coefficient * sum_i
H(pre_i - theta_i)`.

The step function has no useful gradient, so both the jump and the L0 term use the paper's
straight-through pseudo-derivatives with a rectangle kernel K of width `bandwidth` (eps):
d(JumpReLU)/d(theta) = -(theta / eps) K((pre - theta) / eps) and d(H)/d(theta) = -(1 / eps) K(...);
the input gets the ordinary gradient of `pre * H(pre - theta)` (none through the L0 term).
`theta` is trained directly (not its log) and kept >= 0 after each step, so the saved threshold is
exactly the trained one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from interp.base.errors import InputError
from interp.dictionaries.base import Dictionary, DictionaryConfig, warmup_factor
from interp.dictionaries.registry import register_architecture


def _rectangle(z: Tensor) -> Tensor:
    return ((z > -0.5) & (z < 0.5)).to(z.dtype)


def _sum_to(grad: Tensor, shape: torch.Size) -> Tensor:
    return grad.reshape(-1, shape[-1]).sum(0)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return torch.relu(pre) * (pre > threshold)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_pre = grad * ((pre > threshold) & (pre > 0))
        grad_threshold = -(threshold / eps) * _rectangle((pre - threshold) / eps) * grad
        return grad_pre, _sum_to(grad_threshold, threshold.shape), None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, None]:
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_threshold = -(1.0 / eps) * _rectangle((pre - threshold) / eps) * grad
        return None, _sum_to(grad_threshold, threshold.shape), None


@dataclass
class JumpReLUConfig(DictionaryConfig):
    l0_coefficient: float = 1.0
    """Weight of the L0 penalty (latents active per token) relative to the squared error."""
    bandwidth: float = 0.05
    """Width eps of the pseudo-derivative's kernel, in units of the pre-activations."""
    init_threshold: float = 0.01
    """Every latent's threshold at initialisation."""
    l0_warmup_steps: int = 0
    """Steps over which the L0 coefficient ramps linearly from 0."""

    architecture = "jumprelu"

    def __post_init__(self) -> None:
        super().__post_init__()
        if (
            self.l0_coefficient < 0
            or self.bandwidth <= 0
            or self.init_threshold < 0
            or self.l0_warmup_steps < 0
        ):
            raise InputError(
                "JumpReLU needs l0_coefficient >= 0, bandwidth > 0, init_threshold >= 0, l0_warmup_steps >= 0."
            )


@register_architecture
class JumpReLUDictionary(Dictionary):
    config_class = JumpReLUConfig
    cfg: JumpReLUConfig

    def __init__(self, cfg: JumpReLUConfig, *, seed: int = 0):
        super().__init__(cfg, seed=seed)
        self.threshold = nn.Parameter(torch.full((cfg.d_sae,), float(cfg.init_threshold)))

    def activate(self, pre: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        return torch.relu(pre) * (pre > self.threshold)

    def train_activate(self, pre: Float[Tensor, "token d_sae"]) -> Float[Tensor, "token d_sae"]:
        return _JumpReLU.apply(pre, self.threshold, self.cfg.bandwidth)

    def extra_losses(
        self,
        pre: Float[Tensor, "token d_sae"],
        acts: Float[Tensor, "token d_sae"],
        out: Float[Tensor, "token d_out"],
        target: Float[Tensor, "token d_out"],
        dead: Bool[Tensor, " d_sae"],
        step: int,
    ) -> dict[str, Tensor]:
        coefficient = self.cfg.l0_coefficient * warmup_factor(step, self.cfg.l0_warmup_steps)
        l0 = _Step.apply(pre, self.threshold, self.cfg.bandwidth).sum(-1).mean()
        return {"l0": coefficient * l0}

    @torch.no_grad()
    def after_step(self) -> None:
        self.threshold.clamp_(min=0.0)
