"""BatchTopK (Bussmann, Leask & Nanda 2024): during training keep the `k * n_tokens` largest
ReLU'd pre-activations of the whole batch, so tokens share a budget of `k` latents on average.

Inference cannot depend on the batch, so a threshold `theta` is learnt alongside: an exponential
moving average (rate `threshold_lr`, started at the first batch's value) of the smallest activation
the batch selection kept. At inference `acts = ReLU(pre) * (pre > theta)`, a JumpReLU with one
threshold shared by all latents; it is stored as SAELens's `threshold [d_sae]` (what SAELens writes
for a trained BatchTopK SAE, whose inference architecture is `jumprelu`). AuxK as for TopK.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.base.errors import InputError
from interp.dictionaries.architectures.topk import TopKDictionary
from interp.dictionaries.base import DictionaryConfig
from interp.dictionaries.registry import register_architecture


@dataclass
class BatchTopKConfig(DictionaryConfig):
    k: int | float = 32
    """Latents active per token on average over a training batch."""
    aux_k: int | None = None
    """Dead latents used by AuxK per token; None: d_in // 2."""
    aux_coefficient: float = 1 / 32
    """Weight of the AuxK loss; 0 disables it."""
    threshold_lr: float = 0.01
    """Rate of the moving average that estimates the inference threshold."""

    architecture = "batchtopk"
    rescale_acts_by_decoder_norm = False  # shared with TopK's code paths; not a field here

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.k, bool) or not 0 < self.k <= self.d_sae:
            raise InputError(f"k={self.k!r} is not allowed; it must be in (0, d_sae={self.d_sae}].")
        if self.aux_k is not None and not 1 <= self.aux_k <= self.d_sae:
            raise InputError(f"aux_k={self.aux_k!r} is not allowed; use None or an integer in 1..d_sae.")
        if not 0 < self.threshold_lr <= 1 or self.aux_coefficient < 0:
            raise InputError("threshold_lr must be in (0, 1] and aux_coefficient >= 0.")


@register_architecture
class BatchTopKDictionary(TopKDictionary):
    config_class = BatchTopKConfig
    cfg: BatchTopKConfig  # type: ignore[assignment]
    threshold: Tensor

    def __init__(self, cfg: BatchTopKConfig, *, seed: int = 0):
        super().__init__(cfg, seed=seed)
        self.register_buffer("threshold", torch.zeros(cfg.d_sae))

    def activate(self, pre: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        return torch.relu(pre) * (pre > self.threshold)

    def train_activate(self, pre: Float[Tensor, "token d_sae"]) -> Float[Tensor, "token d_sae"]:
        acts = torch.relu(pre)
        n_keep = max(1, round(self.cfg.k * pre.shape[0]))
        top = acts.flatten().topk(n_keep, sorted=False)
        kept = torch.zeros_like(acts.flatten()).scatter(0, top.indices, top.values).view_as(acts)
        with torch.no_grad():
            positive = top.values[top.values > 0]
            if positive.numel():
                smallest = positive.min()
                if not bool(self.threshold.any()):  # first batch (or never trained): start the average here
                    self.threshold.fill_(smallest)
                else:
                    rate = self.cfg.threshold_lr
                    self.threshold.mul_(1 - rate).add_(rate * smallest)
        return kept
