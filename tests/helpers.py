"""Factories for tiny random Phi models saved as real model directories (no downloads)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PhiConfig, PhiForCausalLM

from interp.toy.train import make_tokenizer
from interp.toy.vocab import D_VOCAB


def make_phi_config(**overrides) -> PhiConfig:
    """A tiny Phi: 2 layers, d_model 80, 2 heads of 40 dims, rotary on 16 of them (factor 0.4)."""
    settings = dict(
        vocab_size=D_VOCAB,
        hidden_size=80,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=2,
        partial_rotary_factor=0.4,
        max_position_embeddings=64,
        hidden_act="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attention_dropout=0.0,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    settings.update(overrides)
    return PhiConfig(**settings)


@torch.no_grad()
def make_phi_model(seed: int = 0, **overrides) -> PhiForCausalLM:
    """Random weights with LayerNorm weights/biases and every bias randomised (so folding matters)."""
    torch.manual_seed(seed)
    model = PhiForCausalLM(make_phi_config(**overrides)).eval()
    for name, param in model.named_parameters():
        if "layernorm" in name:
            base = 1.0 if name.endswith("weight") else 0.0
            param.copy_(base + 0.3 * torch.randn_like(param))
        elif name.endswith("bias"):
            param.copy_(0.1 * torch.randn_like(param))
        else:
            param.copy_(0.2 * torch.randn_like(param))
    return model


def save_phi_dir(directory: Path, seed: int = 0, tokenizer: bool = True, **overrides) -> Path:
    """Write a tiny random Phi (and, by default, the toy tokenizer) as a model directory."""
    model = make_phi_model(seed, **overrides)
    model.save_pretrained(directory)
    if tokenizer:
        make_tokenizer().save_pretrained(directory)
    return directory
