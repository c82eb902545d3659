"""The model's weights in TransformerLens's per-head layout, read from a loaded model without copies
(the fused q/k/v matrix apart): what every functional forward in `interp.engine` computes with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.engine import splicing
from interp.model.loading import HookedPhi


@dataclass
class PhiWeights:
    """The model's weights in TransformerLens's per-head layout (views, not copies, where possible)."""

    W_E: Float[Tensor, "d_vocab d_model"]
    ln_w: list[Float[Tensor, " d_model"]]
    ln_b: list[Float[Tensor, " d_model"]]
    W_QKV: list[
        Float[Tensor, "qkv d_model"]
    ]  # q, k, v stacked as Hugging Face's Linear weights (3 * head * d_head rows)
    b_QKV: list[Float[Tensor, " qkv"]]
    W_O: list[Float[Tensor, "head d_head d_model"]]
    b_O: list[Float[Tensor, " d_model"]]
    W_in: list[Float[Tensor, "d_mlp d_model"]]
    b_in: list[Float[Tensor, " d_mlp"]]
    W_out: list[Float[Tensor, "d_model d_mlp"]]
    b_out: list[Float[Tensor, " d_model"]]
    ln_f_w: Float[Tensor, " d_model"]
    ln_f_b: Float[Tensor, " d_model"]
    W_U: Float[Tensor, "d_vocab d_model"]
    b_U: Float[Tensor, " d_vocab"] | None
    n_heads: int
    d_head: int
    rotary_dim: int
    rope_theta: float
    eps: float
    act: str
    splice: Any = None  # the dictionaries spliced into the model (`interp.engine.splicing.Splicer`)

    @property
    def n_layers(self) -> int:
        return len(self.ln_w)

    @classmethod
    def from_model(cls, model: HookedPhi) -> PhiWeights:
        """The weights of a loaded model (no copies except the fused q/k/v matrix)."""
        hf = model.original_model
        layers = hf.model.layers
        attn0 = layers[0].self_attn
        rope = hf.config.rope_parameters
        return cls(
            W_E=hf.model.embed_tokens.weight,
            ln_w=[layer.input_layernorm.weight for layer in layers],
            ln_b=[layer.input_layernorm.bias for layer in layers],
            W_QKV=[
                torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
                for a in (layer.self_attn for layer in layers)
            ],
            b_QKV=[
                torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])
                for a in (layer.self_attn for layer in layers)
            ],
            W_O=[
                einops.rearrange(
                    layer.self_attn.dense.weight, "m (h d) -> h d m", h=hf.config.num_attention_heads
                )
                for layer in layers
            ],
            b_O=[layer.self_attn.dense.bias for layer in layers],
            W_in=[layer.mlp.fc1.weight for layer in layers],
            b_in=[layer.mlp.fc1.bias for layer in layers],
            W_out=[layer.mlp.fc2.weight for layer in layers],
            b_out=[layer.mlp.fc2.bias for layer in layers],
            ln_f_w=hf.model.final_layernorm.weight,
            ln_f_b=hf.model.final_layernorm.bias,
            W_U=hf.lm_head.weight,
            b_U=hf.lm_head.bias,
            n_heads=hf.config.num_attention_heads,
            d_head=attn0.head_dim,
            rotary_dim=attn0.rotary_ndims,
            rope_theta=float(rope["rope_theta"]),
            eps=hf.config.layer_norm_eps,
            act=hf.config.hidden_act,
            splice=splicing.active(model),
        )

    def rotary(self, positions: Int[Tensor, "*batch pos"], dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """cos, sin of shape [*batch, pos, rotary_dim], as Hugging Face's default rotary embedding."""
        dim = self.rotary_dim
        inv_freq = 1.0 / (self.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        freqs = positions.float()[..., None] * inv_freq.to(positions.device)
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)
