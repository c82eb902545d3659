"""TopK (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): keep each token's `k` largest
pre-activations (ReLU'd), zero the rest; no sparsity penalty.

AuxK: latents that have not fired for `dead_after_tokens` (tracked by the trainer) are made to
predict the reconstruction's residual with their own top `aux_k` pre-activations, which brings dead
latents back. Loss `aux_coefficient * scale * ||e - acts_aux @ W_dec||^2` with `e` the (detached)
residual and `scale = min(n_dead / aux_k, 1)`; `b_dec` is not added to the auxiliary decode (the
residual already accounts for it; sparsify 1.3.3 fixed the same double count).

`rescale_acts_by_decoder_norm` (SAELens's TopK field) selects on `pre * ||W_dec[i]||` and divides
activations by the norm before decoding; with unit decoder rows (as trained here) it changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.base.errors import InputError
from interp.dictionaries.base import Dictionary, DictionaryConfig
from interp.dictionaries.registry import register_architecture


@dataclass
class TopKConfig(DictionaryConfig):
    k: int = 32
    """Latents active per token."""
    aux_k: int | None = None
    """Dead latents used by AuxK per token; None: d_in // 2 (Gao et al.'s heuristic)."""
    aux_coefficient: float = 1 / 32
    """Weight of the AuxK loss (Gao et al. use 1/32); 0 disables it."""
    rescale_acts_by_decoder_norm: bool = False
    """SAELens's field: select and scale by decoder norms (see the module docstring)."""

    architecture = "topk"

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= self.d_sae:
            raise InputError(f"k={self.k!r} is not allowed; it must be an integer in 1..d_sae={self.d_sae}.")
        if self.aux_k is not None and not 1 <= self.aux_k <= self.d_sae:
            raise InputError(f"aux_k={self.aux_k!r} is not allowed; use None or an integer in 1..d_sae.")
        if self.aux_coefficient < 0:
            raise InputError("aux_coefficient must be >= 0.")


def keep_top(values: Float[Tensor, "... d_sae"], k: int) -> Float[Tensor, "... d_sae"]:
    """`values` with all but each row's `k` largest set to zero, ReLU'd."""
    top = values.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(values).scatter(-1, top.indices, top.values.relu())


@register_architecture
class TopKDictionary(Dictionary):
    config_class = TopKConfig
    cfg: TopKConfig

    def _scaled(self, pre: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        return pre * self.W_dec.norm(dim=-1) if self.cfg.rescale_acts_by_decoder_norm else pre

    def activate(self, pre: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        return keep_top(self._scaled(pre), self.cfg.k)

    def decode(self, acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_out"]:
        if self.cfg.rescale_acts_by_decoder_norm:
            acts = acts / self.W_dec.norm(dim=-1)
        return acts @ self.W_dec + self.b_dec

    def training_losses(
        self,
        x: Float[Tensor, "token d_in"],
        target: Float[Tensor, "token d_out"],
        dead: Bool[Tensor, " d_sae"],
        step: int,
    ) -> tuple[Float[Tensor, "token d_sae"], Float[Tensor, "token d_out"], dict[str, Tensor]]:
        """The dense path's losses with sparse backward passes (`interp.dictionaries.sparse_topk`);
        the dense path where latents are selected otherwise (decoder norms, BatchTopK)."""
        if (
            self.cfg.rescale_acts_by_decoder_norm
            or type(self).train_activate is not Dictionary.train_activate
        ):
            return super().training_losses(x, target, dead, step)
        from interp.dictionaries import sparse_topk

        x = x.to(torch.float32)
        centred = x - self.b_dec if self.cfg.apply_b_dec_to_input else x
        with torch.no_grad():
            pre = centred @ self.W_enc + self.b_enc
        indices = pre.topk(self.cfg.k, dim=-1, sorted=False).indices
        values = sparse_topk.select(centred, self.W_enc, self.b_enc, pre, indices)
        out = sparse_topk.decode_sparse(values, indices, self.W_dec) + self.b_dec
        if self.W_skip is not None:
            out = out + self.skip(x)
        losses = {"mse": (out - target).pow(2).sum(-1).mean()}
        n_dead = int(dead.sum())
        if n_dead and self.cfg.aux_coefficient:
            aux_k = min(self.cfg.aux_k or max(1, self.d_in // 2), n_dead)
            scale = min(n_dead / (self.cfg.aux_k or max(1, self.d_in // 2)), 1.0)
            masked = torch.where(dead, pre, torch.full_like(pre, -torch.inf))
            aux_indices = masked.topk(aux_k, dim=-1, sorted=False).indices
            aux_values = sparse_topk.select(centred, self.W_enc, self.b_enc, pre, aux_indices)
            aux_out = sparse_topk.decode_sparse(aux_values, aux_indices, self.W_dec)
            aux = (aux_out - (target - out).detach()).pow(2).sum(-1).mean()
            losses["auxk"] = self.cfg.aux_coefficient * scale * aux
        return sparse_topk.dense(values, indices, self.d_sae), out, losses

    def extra_losses(
        self,
        pre: Float[Tensor, "token d_sae"],
        acts: Float[Tensor, "token d_sae"],
        out: Float[Tensor, "token d_out"],
        target: Float[Tensor, "token d_out"],
        dead: Bool[Tensor, " d_sae"],
        step: int,
    ) -> dict[str, Tensor]:
        n_dead = int(dead.sum())
        if n_dead == 0 or self.cfg.aux_coefficient == 0:
            return {}
        aux_k = self.cfg.aux_k or max(1, self.d_in // 2)
        scale = min(n_dead / aux_k, 1.0)
        masked = torch.where(dead, self._scaled(pre), torch.full_like(pre, -torch.inf))
        aux_acts = keep_top(masked, min(aux_k, n_dead))
        if self.cfg.rescale_acts_by_decoder_norm:
            aux_acts = aux_acts / self.W_dec.norm(dim=-1)
        residual = (target - out).detach()
        aux = (aux_acts @ self.W_dec - residual).pow(2).sum(-1).mean()
        return {"auxk": self.cfg.aux_coefficient * scale * aux}
