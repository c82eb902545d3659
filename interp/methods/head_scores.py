"""Attention-head pattern scores and per-head outputs.

All four scores come from one forward pass over repeated random tokens: each prompt is a random
sequence `r` of `seq_len` tokens followed by `r` again (no BOS, as Phi prepends none). For a head's
pattern `A[dest, src]` (rows sum to one), averaged over prompts:

- `previous_token`: mean of `A[p, p-1]` over every position `p >= 1`.
- `induction`: mean of `A[p, p-seq_len+1]` over the second copy: attention to the token that
  *followed* the previous occurrence of the current token (Olsson et al. 2022).
- `duplicate_token`: mean of `A[p, p-seq_len]` over the second copy: attention to the
  previous occurrence of the current token itself.
- `first_token`: mean of `A[p, 0]` over `p >= 1`: attention parked on the first token (a sink).

Scores lie in [0, 1]; a head that does the thing perfectly scores 1.
"""

from __future__ import annotations

from typing import Literal

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.data.tokens import real_token_ids
from interp.model.cache import cache_activations
from interp.model.hooks import refuse_user_hooks
from interp.model.loading import HookedPhi

ScoreKind = Literal["previous_token", "induction", "duplicate_token", "first_token"]
SCORE_KINDS: tuple[ScoreKind, ...] = ("previous_token", "induction", "duplicate_token", "first_token")


def repeated_random_tokens(
    model: HookedPhi, n_prompts: int = 16, seq_len: int = 20, seed: int = 0
) -> Int[Tensor, "batch pos"]:
    """`n_prompts` rows of a random sequence of `seq_len` ordinary tokens, repeated twice."""
    generator = torch.Generator().manual_seed(seed)
    ids = real_token_ids(model)
    half = ids[torch.randint(len(ids), (n_prompts, seq_len), generator=generator)]
    return torch.cat([half, half], dim=1)


def attention_patterns(
    model: HookedPhi, tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "layer batch head dest_pos src_pos"]:
    """Every layer's attention pattern from one forward pass."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    cache = cache_activations(model, tokens, names)
    return torch.stack([cache[name].float() for name in names])


def scores_from_patterns(
    patterns: Float[Tensor, "layer batch head dest_pos src_pos"], seq_len: int
) -> dict[ScoreKind, Float[Tensor, "layer head"]]:
    """The four scores (module docstring) from patterns over `[r, r]` prompts with `len(r) = seq_len`."""
    n_pos = patterns.shape[-1]
    pos = torch.arange(n_pos)
    second = pos[seq_len:]

    def mean_at(dest: Tensor, src: Tensor) -> Float[Tensor, "layer head"]:
        picked = patterns[..., dest, src]  # layer batch head n_picked
        return einops.reduce(picked, "layer batch head n -> layer head", "mean")

    return {
        "previous_token": mean_at(pos[1:], pos[1:] - 1),
        "induction": mean_at(second, second - seq_len + 1),
        "duplicate_token": mean_at(second, second - seq_len),
        "first_token": mean_at(pos[1:], torch.zeros_like(pos[1:])),
    }


def head_scores(
    model: HookedPhi, n_prompts: int = 16, seq_len: int = 20, seed: int = 0
) -> dict[ScoreKind, Float[Tensor, "layer head"]]:
    """All four head scores for every head, from one forward over repeated random tokens."""
    refuse_user_hooks(model, "head scores")
    tokens = repeated_random_tokens(model, n_prompts, seq_len, seed)
    return scores_from_patterns(attention_patterns(model, tokens), seq_len)


def head_results(
    model: HookedPhi, z: Float[Tensor, "batch pos head d_head"], layer: int
) -> Float[Tensor, "batch pos head d_model"]:
    """Each head's write to the residual stream: `z @ W_O[layer]` (the output bias is not included)."""
    W_O = model.W_O[layer].to(z.dtype)  # head d_head d_model
    return einops.einsum(z, W_O, "batch pos head d_head, head d_head d_model -> batch pos head d_model")


def top_heads(scores: Float[Tensor, "layer head"], k: int = 5) -> list[tuple[int, int, float]]:
    """The k highest-scoring heads as (layer, head, score), best first."""
    n_heads = scores.shape[1]
    values, flat = scores.flatten().topk(min(k, scores.numel()))
    return [(int(i) // n_heads, int(i) % n_heads, float(v)) for v, i in zip(values, flat, strict=True)]
