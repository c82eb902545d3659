"""TopK's sparse training step equals the dense one: the same activations, losses and gradients."""

from __future__ import annotations

import pytest
import torch

from interp.dictionaries import make_dictionary
from interp.dictionaries.base import Dictionary


def losses_and_grads(d, x, target, dead, dense: bool):
    d.zero_grad(set_to_none=True)
    step = Dictionary.training_losses if dense else type(d).training_losses
    acts, out, losses = step(d, x, target, dead, 0)
    sum(losses.values()).backward()
    grads = {name: p.grad.clone() for name, p in d.named_parameters()}
    return acts.detach(), out.detach(), {k: v.detach() for k, v in losses.items()}, grads


@pytest.mark.parametrize("kind", ["sae", "transcoder", "skip_transcoder"])
@pytest.mark.parametrize("n_dead", [0, 5, 40])
def test_the_sparse_step_equals_the_dense_step(kind, n_dead):
    g = torch.Generator().manual_seed(0)
    d = make_dictionary(
        "topk", d_in=12, d_sae=48, k=5, kind=kind, d_out=None if kind == "sae" else 7, aux_k=8
    )
    with torch.no_grad():  # biases and a skip path that are not zero, so every gradient is exercised
        for p in d.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    x = torch.randn(64, 12, generator=g)
    target = x if kind == "sae" else torch.randn(64, 7, generator=g)
    dead = torch.zeros(48, dtype=torch.bool)
    dead[torch.randperm(48, generator=g)[:n_dead]] = True
    sparse = losses_and_grads(d, x, target, dead, dense=False)
    reference = losses_and_grads(d, x, target, dead, dense=True)
    torch.testing.assert_close(sparse[0], reference[0], rtol=0, atol=0)  # the same latents and values
    torch.testing.assert_close(sparse[1], reference[1])
    assert sparse[2].keys() == reference[2].keys() == ({"mse", "auxk"} if n_dead else {"mse"})
    for name in reference[2]:
        torch.testing.assert_close(sparse[2][name], reference[2][name])
    for name, grad in reference[3].items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(
            sparse[3][name], grad, rtol=1e-5, atol=1e-6 * float(grad.abs().max()), msg=name
        )


def test_selection_by_decoder_norm_and_batchtopk_keep_the_dense_step():
    x = torch.randn(32, 8)
    for d in (
        make_dictionary("topk", d_in=8, d_sae=16, k=3, rescale_acts_by_decoder_norm=True),
        make_dictionary("batchtopk", d_in=8, d_sae=16, k=3),
    ):
        with torch.no_grad():
            d.W_dec.mul_(torch.linspace(0.5, 2.0, 16)[:, None])  # norms that are not one
        torch.manual_seed(0)
        acts, _, losses = d.training_losses(x, x, torch.zeros(16, dtype=torch.bool), 0)
        reference, _, dense_losses = Dictionary.training_losses(d, x, x, torch.zeros(16, dtype=torch.bool), 0)
        assert torch.equal(acts, reference) and torch.equal(losses["mse"], dense_losses["mse"])
