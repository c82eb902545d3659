"""Ground truth that could fail: dictionaries recover known sparse features and a known sparse map.

Sharkey et al. (2022)'s setting at CPU size: 64 random unit directions in 32 dimensions, each on
with probability 3/64 (about 3 per sample) at a magnitude uniform in [0.5, 1.5]. Recovery = the mean
over true features of the best cosine with any decoder row (1 = every feature has a latent).
Measured (seeded, so these are what the asserts see), recovery at the tokens each is given:
TopK 0.997 (100k tokens), BatchTopK 0.976 (200k; 0.929 at 100k), JumpReLU 0.973 (200k; 0.846 at
100k), ReLU + L1 0.972 (200k, at L0 about 6; 0.776 at 100k): the penalised architectures need more
tokens than TopK, whose sparsity is fixed from the first step. Untrained, recovery is about 0.44.
"""

from __future__ import annotations

import pytest
import torch

from dictionaries.synthetic import recovery, sparse_codes, unit_directions
from interp.dictionaries import evaluate_dictionary, make_dictionary, train_dictionary

SETTINGS = {  # architecture: (its fields, training tokens)
    "topk": ({"k": 3}, 100_000),
    "batchtopk": ({"k": 3}, 200_000),
    "jumprelu": ({"l0_coefficient": 0.1, "init_threshold": 0.3, "bandwidth": 0.1}, 200_000),
    "relu": ({"l1_coefficient": 1.0}, 200_000),
}
TRAINING = {"batch_tokens": 256, "buffer_tokens": 8192, "lr": 3e-3, "dead_after_tokens": 20000}


@pytest.mark.slow
@pytest.mark.parametrize("architecture", SETTINGS)
def test_each_sae_architecture_recovers_the_true_features(architecture):
    features = unit_directions(64, 32)
    fields, n_tokens = SETTINGS[architecture]
    x = sparse_codes(n_tokens) @ features
    sae = make_dictionary(architecture, d_in=32, d_sae=128, **fields)
    untrained = recovery(features, sae.W_dec)
    train_dictionary(sae, x, **TRAINING)
    assert untrained < 0.7  # random rows in 32 dims: the bar is not met by chance
    assert recovery(features, sae.W_dec) >= 0.95


@pytest.mark.slow
def test_a_transcoder_recovers_a_known_sparse_map():
    """x = codes @ F (64 features in 32 dims), y = codes @ G (the same codes, 64 directions in 16
    dims): a TopK transcoder's decoder rows must find G, and it must predict held-out y. Measured:
    recovery 0.994 (0.60 untrained) and explained variance 0.91; k=4 truncates the ~5% of samples with more than four
    active features, so 0.85 leaves room for the optimiser, not for a wrong map (a map from the
    wrong codes explains ~0)."""
    F, G = unit_directions(64, 32), unit_directions(64, 16, seed=5)
    codes = sparse_codes(305_000, active=2.0)
    x, y = codes @ F, codes @ G
    tc = make_dictionary("topk", d_in=32, d_sae=128, k=4, kind="transcoder", d_out=16)
    assert recovery(G, tc.W_dec) < 0.7
    train_dictionary(tc, x[:300_000], targets=y[:300_000], **TRAINING)
    assert recovery(G, tc.W_dec) >= 0.95
    assert evaluate_dictionary(tc, x[300_000:], targets=y[300_000:]).explained_variance >= 0.85
    shuffled = y[300_000:][torch.randperm(5000, generator=torch.Generator().manual_seed(0))]
    assert evaluate_dictionary(tc, x[300_000:], targets=shuffled).explained_variance < 0.1
