"""Models and transcoders for the attribution-graph tests: random ones, and one built by construction."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers import make_phi_model
from transformers import PreTrainedTokenizerFast

from interp.dictionaries import make_dictionary
from interp.toy.train import make_tokenizer

PLANTED_TOKEN, ANSWER, D_SAE = 50, 60, 16
F0, F1 = 3, 11  # the planted features of layers 0 and 1
PLANTED_PROMPT = [40, 41, 42, PLANTED_TOKEN]


def random_transcoders(
    n_layers: int,
    d_model: int,
    d_sae: int = 32,
    architecture: str = "relu",
    kind: str = "transcoder",
    point: str = "ln1.hook_normalized",
    seed: int = 0,
    **fields,
) -> list:
    """One random transcoder per layer with random biases (so every bias term is exercised), reading
    `blocks.L.<point>` and writing `blocks.L.hook_mlp_out`."""
    transcoders = []
    generator = torch.Generator().manual_seed(seed)
    for layer in range(n_layers):
        tc = make_dictionary(
            architecture, d_in=d_model, d_sae=d_sae, kind=kind, seed=seed + layer,
            hook_name=f"blocks.{layer}.{point}", hook_name_out=f"blocks.{layer}.hook_mlp_out", **fields,
        )  # fmt: skip
        with torch.no_grad():
            tc.b_enc.copy_(0.3 * torch.randn(d_sae, generator=generator))
            tc.b_dec.copy_(0.3 * torch.randn(d_model, generator=generator))
            tc.W_dec.mul_(0.5)
            if tc.W_skip is not None:
                tc.W_skip.copy_(0.05 * torch.randn(d_model, d_model, generator=generator))
            if hasattr(tc, "threshold"):
                tc.threshold.fill_(0.1)
        transcoders.append(tc)
    return transcoders


def _orthonormal(n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """`n` orthonormal zero-mean directions of R^d (so LayerNorm's centring leaves them alone)."""
    vectors = torch.randn(n, d, generator=generator)
    vectors -= vectors.mean(1, keepdim=True)
    q, _ = torch.linalg.qr(vectors.T)
    q -= q.mean(0, keepdim=True)
    q, _ = torch.linalg.qr(q)
    return q.T[:n]


@torch.no_grad()
def save_planted_path_dir(directory: Path, seed: int = 0) -> Path:
    """A 2-layer Phi built so that the answer travels exactly one feature path at the last position:
    token PLANTED_TOKEN -> layer-0 neuron F0 -> layer-1 neuron F1 -> logit ANSWER.

    Attention writes nothing (W_O, b_O zero), LayerNorms have unit weight and zero bias, every MLP bias
    and the unembedding bias too. Three orthonormal zero-mean directions r, u, w: the token's embedding
    is 3r (every other embedding and every unembedding row is orthogonal to r, u and w); neuron F0 reads
    r (pre-activation 4 at the token) and writes 2u; neuron F1 reads u (pre-activation 4) and writes 3w;
    only ANSWER's unembedding row has a w component. Every other neuron has bias -4 and small weights,
    so it is off (gelu_new(-4) ~ -1e-4). `planted_transcoders` are these MLPs with ReLU for gelu: their
    error nodes are of order 1e-4.
    """
    model = make_phi_model(seed, intermediate_size=D_SAE)
    generator = torch.Generator().manual_seed(seed + 1)
    d = model.config.hidden_size
    r, u, w = _orthonormal(3, d, generator)
    hf = model.model
    for block in hf.layers:
        block.input_layernorm.weight.fill_(1.0)
        block.input_layernorm.bias.zero_()
        block.self_attn.dense.weight.zero_()
        block.self_attn.dense.bias.zero_()
        block.mlp.fc1.weight.copy_(0.01 * torch.randn(D_SAE, d, generator=generator))
        block.mlp.fc1.bias.fill_(-4.0)
        block.mlp.fc2.weight.copy_(0.05 * torch.randn(d, D_SAE, generator=generator))
        block.mlp.fc2.bias.zero_()
    hf.final_layernorm.weight.fill_(1.0)
    hf.final_layernorm.bias.zero_()
    model.lm_head.bias.zero_()
    for matrix in (hf.embed_tokens.weight, model.lm_head.weight):
        for direction in (r, u, w):
            matrix -= torch.outer(matrix @ direction, direction)
    hf.embed_tokens.weight[PLANTED_TOKEN] = 3.0 * r
    model.lm_head.weight[ANSWER] += 5.0 * w
    for block in hf.layers:  # the planted neurons read nothing else
        for f in (F0, F1):
            block.mlp.fc1.weight[f] = 0.0
            block.mlp.fc2.weight[:, f] = 0.0
    layer0, layer1 = hf.layers
    x0 = hf.embed_tokens.weight[PLANTED_TOKEN]
    normalized0 = (x0 - x0.mean()) / (x0 - x0.mean()).pow(2).mean().add(model.config.layer_norm_eps).sqrt()
    layer0.mlp.fc1.weight[F0] = r * (4.0 / float(normalized0 @ r))
    layer0.mlp.fc1.bias[F0] = 0.0
    layer0.mlp.fc2.weight[:, F0] = 2.0 * u
    hidden = torch.nn.functional.gelu(layer0.mlp.fc1(normalized0), approximate="tanh")
    x1 = x0 + layer0.mlp.fc2(hidden)
    normalized1 = (x1 - x1.mean()) / (x1 - x1.mean()).pow(2).mean().add(model.config.layer_norm_eps).sqrt()
    layer1.mlp.fc1.weight[F1] = u * (4.0 / float(normalized1 @ u))
    layer1.mlp.fc1.bias[F1] = 0.0
    layer1.mlp.fc2.weight[:, F1] = 3.0 * w
    model.save_pretrained(directory)
    tokenizer: PreTrainedTokenizerFast = make_tokenizer()
    tokenizer.save_pretrained(directory)
    return directory


@torch.no_grad()
def planted_transcoders(model) -> list:
    """Each layer's MLP as a ReLU transcoder (W_enc = fc1^T, W_dec = fc2^T, biases the same)."""
    hf = model.original_model.model
    transcoders = []
    for layer, block in enumerate(hf.layers):
        tc = make_dictionary(
            "relu", d_in=block.mlp.fc1.in_features, d_sae=D_SAE, kind="transcoder",
            hook_name=f"blocks.{layer}.ln1.hook_normalized", hook_name_out=f"blocks.{layer}.hook_mlp_out",
        )  # fmt: skip
        tc.W_enc.copy_(block.mlp.fc1.weight.T)
        tc.b_enc.copy_(block.mlp.fc1.bias)
        tc.W_dec.copy_(block.mlp.fc2.weight.T)
        tc.b_dec.copy_(block.mlp.fc2.bias)
        transcoders.append(tc)
    return transcoders
