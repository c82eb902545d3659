"""Per-receiver gradients split out of one plain backward (interp.engine.receiver_gradients) equal an
independent autograd reference that gives every receiver its own copy of the residual stream and its own
LayerNorm (interp.engine.receivers) and differentiates each copy, in float64, for every sender and
receiver input, at the base run, along an interpolation, and with a layer's outputs substituted."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from interp.engine.forward import PhiWeights
from interp.engine.receiver_gradients import EdgeGradients, sender_deltas, sender_run
from interp.engine.receivers import copies, run_receivers
from interp.model.loading import load_model


@pytest.fixture(scope="module")
def weights(tiny_phi_dir):
    w = PhiWeights.from_model(load_model(tiny_phi_dir))
    return dataclasses.replace(
        w,
        **{f.name: _double(getattr(w, f.name)) for f in dataclasses.fields(w) if f.name not in ("n_heads",)},
    )


def _double(value):
    if isinstance(value, torch.Tensor):
        return value.detach().double()
    if isinstance(value, list):
        return [_double(v) for v in value]
    return value


def objective(logits):
    return (logits[:, 3] - logits[:, 7]).sum() + 0.1 * logits.logsumexp(-1).sum()


def reference(w, embed, deltas, replace=None):
    """[batch sender receiver]: delta . d objective / d (receiver's own input copy), summed over pos, d_model."""

    def leaves(layer, resid, outputs):
        return copies(w)(layer, resid, outputs).requires_grad_(True)

    with torch.enable_grad():
        logits, inputs, _ = run_receivers(w, embed, leaves, replace)
        grads = torch.autograd.grad(objective(logits), inputs, allow_unused=True)
    H, batch = w.n_heads, embed.shape[0]
    out = torch.zeros(batch, deltas.shape[1], (3 * H + 1) * w.n_layers + 1, dtype=torch.float64)
    for layer, (x, g) in enumerate(zip(inputs, grads, strict=True)):
        g = torch.zeros_like(x) if g is None else g
        n = 1 + layer * (H + 1)
        first = layer * (3 * H + 1)
        out[:, :n, first : first + g.shape[1]] = torch.einsum("bspd,brpd->bsr", deltas[:, :n], g)
    return out


@pytest.fixture(scope="module")
def runs(weights):
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(2, 280, (3, 7), generator=g)
    other = tokens.clone()
    other[:, 2] = torch.randint(2, 280, (3,), generator=g)
    base, source = weights.W_E[tokens], weights.W_E[other]
    with torch.no_grad():
        deltas = sender_deltas(weights, sender_run(weights, source), sender_run(weights, base))
    return base, source, deltas


def fast(w, embed, deltas, replace=None):
    gradients = EdgeGradients(w)
    with torch.enable_grad():
        run = sender_run(w, embed, replace=replace, record=True)
        gradients.add(run, objective(run.logits))
    return gradients.scores(deltas).double()


def test_sender_run_and_deltas_match_the_copies_forward(weights, runs):
    base, source, deltas = runs
    logits, _, base_outputs = run_receivers(weights, base, copies(weights))
    _, _, source_outputs = run_receivers(weights, source, copies(weights))
    assert torch.allclose(sender_run(weights, base).logits, logits, atol=1e-12)
    expected = torch.stack(source_outputs, 1) - torch.stack(base_outputs, 1)
    assert deltas.shape == expected.shape and deltas.shape[1] == 1 + weights.n_layers * (weights.n_heads + 1)
    assert torch.allclose(deltas, expected, atol=1e-12)
    assert deltas[:, :, :2].abs().max() == 0  # nothing differs before the changed token


def test_every_edge_equals_the_per_copy_reference_at_the_base_run(weights, runs):
    base, _, deltas = runs
    expected = reference(weights, base, deltas)
    got = fast(weights, base, deltas)
    assert expected.abs().max() > 1e-3
    assert torch.allclose(got, expected, atol=1e-10, rtol=1e-8), (got - expected).abs().max()


def test_every_edge_equals_the_reference_along_an_interpolation(weights, runs):
    base, source, deltas = runs
    gradients = EdgeGradients(weights)
    expected = torch.zeros(0)
    for alpha in (0.25, 0.75):
        embed = base + alpha * (source - base)
        expected = (
            expected + reference(weights, embed, deltas)
            if expected.numel()
            else reference(weights, embed, deltas)
        )
        with torch.enable_grad():
            run = sender_run(weights, embed, record=True)
            gradients.add(run, objective(run.logits))
    got = gradients.scores(deltas).double()
    assert torch.allclose(got, expected / 2, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("part", ["heads", "mlp"])
def test_a_substituted_layer_gives_the_references_gradients(weights, runs, part):
    base, _, deltas = runs
    H, d_head = weights.n_heads, weights.d_head
    fixed_z = torch.randn(*base.shape[:2], H, d_head, dtype=torch.float64)
    fixed_heads = torch.einsum("bphd,hdm->hbpm", fixed_z, weights.W_O[0])
    fixed_mlp = torch.randn_like(base)

    def replace_fast(layer, z, mlp_out):  # z: batch pos head d_head
        if layer != 0:
            return z, mlp_out
        return (fixed_z, mlp_out) if part == "heads" else (z, fixed_mlp)

    def replace_reference(layer, heads, mlp_out):  # heads: head batch pos d_model
        if layer != 0:
            return heads, mlp_out
        return (fixed_heads, mlp_out) if part == "heads" else (heads, fixed_mlp)

    expected = reference(weights, base, deltas, replace_reference)
    got = fast(weights, base, deltas, replace_fast)
    assert torch.allclose(got, expected, atol=1e-10, rtol=1e-8)
