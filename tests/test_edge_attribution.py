"""EAP and EAP-IG (interp.methods.circuits.edge_attribution): a model built by construction with a known
edge-level circuit, and agreement with exact edge patching on the toy model."""

from __future__ import annotations

import pytest
import torch
from helpers import ANSWER, CUE_CLEAN, CUE_CORRUPTED, PLANTED_EDGES, WRONG, ioi_pairs, save_edge_circuit_dir

from interp.data.prompts import PromptPairs
from interp.methods.circuits.edge_attribution import eap, eap_ig
from interp.methods.circuits.edge_patching import edge_patch
from interp.model.loading import load_model


def auroc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """P(a planted edge scores above a non-planted one), ties counted half (by |score|)."""
    pos, neg = scores[positive].abs(), scores[~positive].abs()
    above = (pos[:, None] > neg[None, :]).float().mean()
    ties = (pos[:, None] == neg[None, :]).float().mean()
    return float(above + 0.5 * ties)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    model = load_model(save_edge_circuit_dir(tmp_path_factory.mktemp("planted")))
    g = torch.Generator().manual_seed(0)
    n, n_pos = 8, 7
    clean = torch.randint(30, 200, (n, n_pos), generator=g)
    cue_at = torch.randint(0, n_pos - 1, (n,), generator=g)
    clean[torch.arange(n), cue_at] = CUE_CLEAN
    corrupted = clean.clone()
    corrupted[torch.arange(n), cue_at] = CUE_CORRUPTED
    pairs = PromptPairs(
        clean, corrupted, torch.full((n,), n_pos), torch.full((n,), ANSWER), torch.full((n,), WRONG)
    )
    return model, pairs


def eap_ig_activations(model, pairs, **options):
    return eap_ig(model, pairs, variant="activations", **options)


@pytest.mark.parametrize("method", [edge_patch, eap, eap_ig, eap_ig_activations])
def test_each_method_ranks_the_planted_edges_on_top(built, method):
    model, pairs = built
    scores = method(model, pairs)
    assert scores.clean > 0.5 and scores.corrupted < -0.5  # the construction does the task
    top = {name for name, _ in scores.top(len(PLANTED_EDGES))}
    assert top == set(PLANTED_EDGES), scores.top(5)
    planted = torch.zeros(scores.graph.n_edges, dtype=torch.bool)
    planted[[scores.graph.edge_position(name) for name in PLANTED_EDGES]] = True
    value = auroc(scores.values, planted)
    print(f"{scores.method}: edge AUROC {value:.3f}")
    assert value >= 0.95


def test_eap_ig_with_one_step_at_the_midpoint_differs_from_eap(built):
    model, pairs = built
    assert not torch.allclose(eap(model, pairs).values, eap_ig(model, pairs, steps=1).values)
    with pytest.raises((ValueError, TypeError)):
        eap_ig(model, pairs, steps=0)


def test_agreement_with_exact_edge_patching_on_the_toy(toy_model):
    """Measured on toy IOI (16 prompts, 463 edges); printed, with floors a little under the measurement."""
    pairs = ioi_pairs(toy_model.tokenizer, 16, seed=7)
    exact = edge_patch(toy_model, pairs).values

    def pearson(a, b):
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / (a.norm() * b.norm()))

    def spearman(a, b):
        return pearson(a.argsort().argsort().double(), b.argsort().argsort().double())

    measured = {}
    for method in (eap, eap_ig):
        values = method(toy_model, pairs).values
        measured[method.__name__] = (pearson(values, exact), spearman(values, exact))
    print("agreement with exact edge patching (pearson, spearman):", measured)
    assert measured["eap"][0] >= 0.8 and measured["eap_ig"][0] >= 0.95


def test_kl_noising_resolves_the_metric_from_the_gradient_run(toy_model):
    """Noising EAP takes the clean distribution from its own base run: its baselines match the core's."""
    from interp.methods.contrastive import contrast

    pairs = ioi_pairs(toy_model.tokenizer, 6, seed=3)
    scores = eap(toy_model, pairs, "kl")
    core = contrast(toy_model, pairs, "kl", direction="noising")
    assert scores.clean == pytest.approx(core.clean_value, abs=1e-5) and abs(scores.clean) < 1e-5
    assert scores.corrupted == pytest.approx(core.corrupted_value, rel=1e-4)
    assert torch.isfinite(scores.values).all() and scores.values.abs().max() > 0


def test_the_activations_variant_agrees_with_exact_edge_patching(toy_model):
    """Measured on toy IOI (16 prompts, 5 steps): Pearson 0.90, Spearman 0.73; here 8 prompts, 3 steps."""
    pairs = ioi_pairs(toy_model.tokenizer, 8, seed=7)
    exact = edge_patch(toy_model, pairs).values
    values = eap_ig(toy_model, pairs, steps=3, variant="activations").values
    a, b = values - values.mean(), exact - exact.mean()
    pearson = float((a * b).sum() / (a.norm() * b.norm()))
    print("eap_ig activations vs exact, pearson:", pearson)
    assert pearson >= 0.8
