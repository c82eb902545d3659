"""The construction the representation tests share (see test_probes_das.py's docstring).

Every token's embedding is orthogonal to a unit direction r except the cue tokens': clean cues carry
+3r, corrupted cues -3r, each on top of its own random part. Layer 0 writes nothing, and one head of
layer 1 attends uniformly, reads r and writes the ANSWER - WRONG unembedding direction, so the answer
at the last token depends only on the cue's projection onto r.
"""

from __future__ import annotations

import torch
from helpers import make_phi_model, plant_cue_head

from interp.toy.train import make_tokenizer

ANSWER, WRONG, LAST = 20, 21, 100
CLEAN_CUES = list(range(30, 38))
CORRUPTED_CUES = list(range(38, 46))
FILLERS = list(range(50, 100))
LAYER, HEAD = 1, 1


@torch.no_grad()
def save_planted(directory, seed: int = 0) -> torch.Tensor:
    model = make_phi_model(seed)
    attn, r = plant_cue_head(model, LAYER, HEAD, CLEAN_CUES, CORRUPTED_CUES)
    embed = model.model.embed_tokens.weight
    d_head = model.config.hidden_size // model.config.num_attention_heads
    u = model.lm_head.weight[ANSWER] - model.lm_head.weight[WRONG]
    u = u - u.mean()
    # small enough that the answer logits do not saturate, so DAS's loss keeps pulling towards r
    attn.dense.weight[:, HEAD * d_head] = 0.3 * u / u.norm() ** 2
    embed[LAST] -= (embed[LAST] @ u) * u / u.norm() ** 2  # the last token alone favours neither answer
    model.lm_head.bias[WRONG] = model.lm_head.bias[ANSWER]
    model.save_pretrained(directory)
    make_tokenizer().save_pretrained(directory)
    return r


def planted_prompts(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[filler, cue, filler, LAST] rows and each row's label (1 for a clean cue)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    cues = torch.where(
        labels == 1,
        torch.tensor(CLEAN_CUES)[torch.randint(0, len(CLEAN_CUES), (n,), generator=g)],
        torch.tensor(CORRUPTED_CUES)[torch.randint(0, len(CORRUPTED_CUES), (n,), generator=g)],
    )
    fillers = torch.tensor(FILLERS)[torch.randint(0, len(FILLERS), (n, 2), generator=g)]
    tokens = torch.stack([fillers[:, 0], cues, fillers[:, 1], torch.full((n,), LAST)], dim=1)
    return tokens, labels


def planted_pairs(n: int, seed: int):
    base, _ = planted_prompts(n, seed)
    source, source_labels = planted_prompts(n, seed + 100)
    return base, source, 1 - source_labels  # the source's answer: index 0 (ANSWER) for a clean cue


# Sparse probing: a label written into known units. Position 1 holds a cue token from one of two
# sets of 140 tokens each (many tokens per class, so random units, which read each token's own
# random embedding, cannot tell the classes apart); the cue carries +3r or -3r on top of a random
# part orthogonal to r. Layer 0's LayerNorm is the identity, and of its MLP neurons only
# ON_NEURONS (reading +r: they fire for a positive cue) and OFF_NEURONS (reading -r) see r at all.
# An SAE at blocks.0.hook_resid_pre has the same structure in ON_LATENTS / OFF_LATENTS.
POSITIVE_CUES = list(range(100, 240))
NEGATIVE_CUES = list(range(240, 380))
ON_NEURONS, OFF_NEURONS = (7, 91), (30, 150)
ON_LATENTS, OFF_LATENTS = (3, 60), (41,)


def _without(weight: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Rows of `weight` with their component along r removed."""
    return weight - torch.outer(weight @ r, r)


@torch.no_grad()
def save_planted_units(directory, seed: int = 0) -> torch.Tensor:
    """Save the sparse-probing construction to `directory`; returns r."""
    model = make_phi_model(seed)
    hf = model.model
    block = hf.layers[0]
    block.input_layernorm.weight.fill_(1.0)
    block.input_layernorm.bias.zero_()
    g = torch.Generator().manual_seed(seed + 7)
    r = torch.randn(model.config.hidden_size, generator=g)
    r = r - r.mean()
    r = r / r.norm()
    embed = hf.embed_tokens.weight
    embed.copy_(_without(embed, r))
    embed[POSITIVE_CUES] += 3.0 * r
    embed[NEGATIVE_CUES] -= 3.0 * r
    fc1 = block.mlp.fc1
    fc1.weight.copy_(_without(fc1.weight, r))
    for neurons, sign in ((ON_NEURONS, 2.0), (OFF_NEURONS, -2.0)):
        fc1.weight[list(neurons)] = sign * r
        fc1.bias[list(neurons)] = 0.0
    model.save_pretrained(directory)
    make_tokenizer().save_pretrained(directory)
    return r


def planted_unit_prompts(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[filler, cue, filler] rows and each row's label (1 for a positive cue)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    cues = torch.where(
        labels == 1,
        torch.tensor(POSITIVE_CUES)[torch.randint(0, len(POSITIVE_CUES), (n,), generator=g)],
        torch.tensor(NEGATIVE_CUES)[torch.randint(0, len(NEGATIVE_CUES), (n,), generator=g)],
    )
    fillers = torch.tensor(FILLERS)[torch.randint(0, len(FILLERS), (n, 2), generator=g)]
    return torch.stack([fillers[:, 0], cues, fillers[:, 1]], dim=1), labels


@torch.no_grad()
def planted_sae(r: torch.Tensor, d_sae: int = 96, seed: int = 0):
    """A ReLU SAE at blocks.0.hook_resid_pre whose ON_LATENTS read +r and OFF_LATENTS -r; every other
    latent's encoder column is orthogonal to r (and fires often, from a positive bias)."""
    from interp.dictionaries import make_dictionary

    sae = make_dictionary("relu", d_in=len(r), d_sae=d_sae, hook_name="blocks.0.hook_resid_pre", seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    sae.W_enc.copy_(_without(sae.W_enc.T, r).T)
    sae.b_enc.copy_(0.5 + 0.1 * torch.randn(d_sae, generator=g))
    sae.b_dec.zero_()
    for latents, sign in ((ON_LATENTS, 1.0), (OFF_LATENTS, -1.0)):
        sae.W_enc[:, list(latents)] = sign * r[:, None]
        sae.b_enc[list(latents)] = 0.0
    return sae
