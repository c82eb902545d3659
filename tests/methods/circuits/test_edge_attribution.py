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


def riemann_reference(model, pairs, ts, direction):
    """EAP-IG's inputs variant written out: the gradient of the summed logit difference with respect to
    every receiver's own copy of its input (per-copy autograd) at each point
    corrupted + t (clean - corrupted) of the embeddings, averaged over the points, dotted with what each
    sender writes in the source run minus the base run; [edge] (mean over prompts)."""
    from interp.engine.forward import PhiWeights
    from interp.engine.receivers import copies, run_receivers
    from interp.methods.circuits.graph import Graph

    w = PhiWeights.from_model(model)
    H, L = w.n_heads, w.n_layers
    clean, corrupted = w.W_E[pairs.clean_tokens].detach(), w.W_E[pairs.corrupted_tokens].detach()
    base, source = (clean, corrupted) if direction == "noising" else (corrupted, clean)
    with torch.no_grad():
        _, _, base_out = run_receivers(w, base, copies(w))
        _, _, source_out = run_receivers(w, source, copies(w))
    deltas = torch.stack(source_out, 1) - torch.stack(base_out, 1)  # batch sender pos d_model
    rows = torch.arange(len(pairs))
    out = torch.zeros(len(pairs), deltas.shape[1], (3 * H + 1) * L + 1)
    for t in ts:

        def leaves(layer, resid, outputs):
            return copies(w)(layer, resid, outputs).requires_grad_(True)

        with torch.enable_grad():
            logits, inputs, _ = run_receivers(w, corrupted + t * (clean - corrupted), leaves)
            diff = logits[rows, pairs.answer] - logits[rows, pairs.wrong]
            grads = torch.autograd.grad(diff.sum(), inputs, allow_unused=True)
        for layer, (x, g) in enumerate(zip(inputs, grads, strict=True)):
            g = torch.zeros_like(x) if g is None else g
            n, first = 1 + layer * (H + 1), layer * (3 * H + 1)
            out[:, :n, first : first + g.shape[1]] += torch.einsum("bspd,brpd->bsr", deltas[:, :n], g)
    return (out / len(ts)).mean(0)[Graph.of(L, H).mask]


class TestIntegrationRule:
    """`rule` places EAP-IG's points: left is the EAP-IG library's `corrupted + (k/m)(clean - corrupted)`."""

    @pytest.mark.parametrize("direction", ["noising", "denoising"])
    @pytest.mark.parametrize(
        ("rule", "offset"), [("left", 0.0), ("right", 1.0), ("midpoint", 0.5)], ids=["left", "right", "mid"]
    )
    def test_each_rule_equals_the_hand_written_riemann_sum(self, built, direction, rule, offset):
        model, pairs = built
        steps = 3
        expected = riemann_reference(model, pairs, [(k + offset) / steps for k in range(steps)], direction)
        got = eap_ig(model, pairs, steps=steps, rule=rule, direction=direction)
        assert got.extra["rule"] == rule and got.extra["steps"] == steps
        scale = expected.abs().max()
        assert scale > 1e-2
        assert (got.values - expected).abs().max() <= 1e-4 * scale, (got.values - expected).abs().max()

    def test_left_differs_from_midpoint_and_midpoint_is_the_default(self, built):
        model, pairs = built
        mid, left = eap_ig(model, pairs, steps=2), eap_ig(model, pairs, steps=2, rule="left")
        assert torch.equal(mid.values, eap_ig(model, pairs, steps=2, rule="midpoint").values)
        assert (mid.values - left.values).abs().max() > 1e-2 * mid.values.abs().max()
        activations = eap_ig(model, pairs, steps=2, variant="activations", rule="right")
        assert not torch.allclose(
            activations.values, eap_ig(model, pairs, steps=2, variant="activations").values
        )

    def test_midpoints_converge_faster_than_the_library_points(self, toy_model):
        """With many steps all rules agree; at few steps the midpoint sum is the closer one."""
        pairs = ioi_pairs(toy_model.tokenizer, 4, seed=2)
        fine = eap_ig(toy_model, pairs, steps=64).values
        errors = {
            r: (eap_ig(toy_model, pairs, steps=4, rule=r).values - fine).norm() for r in ("midpoint", "left")
        }
        assert errors["midpoint"] < errors["left"], errors

    def test_bad_rules_and_steps_are_refused_by_name(self, built):
        import inspect

        from interp.methods.circuits.edge_attribution import integration_points

        model, pairs = built
        with pytest.raises((ValueError, TypeError), match="trapezoid"):
            eap_ig(model, pairs, rule="trapezoid")
        # past the test suite's runtime type checks: the messages users get
        with pytest.raises(
            ValueError, match="rule='trapezoid' is not allowed; use 'midpoint', 'left' or 'right'"
        ):
            inspect.unwrap(integration_points)(3, "trapezoid", "noising")
        with pytest.raises(ValueError, match="steps=2.5 is not allowed"):
            inspect.unwrap(eap_ig)(model, pairs, steps=2.5)


class TestOnTheContrastiveCore:
    """Edge attribution asks the contrastive core for its set-up (`GroupStream`), run with its own
    forward, one length group at a time, with no forward spent twice."""

    @pytest.fixture
    def mixed(self, toy_model):
        """Two length groups: the second half of the prompts cut two tokens short (right-padded)."""
        a = ioi_pairs(toy_model.tokenizer, 4, seed=3)
        n, width = len(a), a.clean_tokens.shape[1]

        def shorter(tokens):
            return torch.cat([tokens[:, : width - 2], torch.zeros(n, 2, dtype=tokens.dtype)], 1)

        return PromptPairs(
            torch.cat([a.clean_tokens, shorter(a.clean_tokens)]),
            torch.cat([a.corrupted_tokens, shorter(a.corrupted_tokens)]),
            torch.cat([a.lengths, a.lengths - 2]),
            torch.cat([a.answer, a.answer]),
            torch.cat([a.wrong, a.wrong]),
        )

    @pytest.mark.parametrize("metric", ["logit_diff", "kl"])
    @pytest.mark.parametrize("direction", ["noising", "denoising"])
    def test_baselines_are_the_cores(self, toy_model, mixed, metric, direction):
        from interp.methods.contrastive import contrast

        assert len(mixed.length_groups()) == 2
        core = contrast(toy_model, mixed, metric, direction=direction)
        for scores in (
            eap(toy_model, mixed, metric, direction=direction),
            eap_ig(toy_model, mixed, metric, steps=1, direction=direction),
        ):
            assert scores.clean == pytest.approx(core.clean_value, rel=1e-5, abs=1e-6)
            assert scores.corrupted == pytest.approx(core.corrupted_value, rel=1e-5, abs=1e-6)

    def test_eap_runs_two_forwards_per_group_and_one_backward(self, toy_model, mixed, monkeypatch):
        import interp.methods.circuits.edge_attribution as module

        calls = []
        real = module.sender_run

        def counted(w, embed, **options):
            calls.append((embed.shape[1], options.get("record", False)))
            return real(w, embed, **options)

        monkeypatch.setattr(module, "sender_run", counted)
        eap(toy_model, mixed)
        width = mixed.clean_tokens.shape[1]
        assert sorted(calls) == sorted([(width, False), (width, True), (width - 2, False), (width - 2, True)])
        calls.clear()
        eap_ig(toy_model, mixed, steps=3)
        assert len(calls) == 2 * (2 + 3) and sum(record for _, record in calls) == 2 * 3

    def test_a_group_is_let_go_before_the_next_runs(self, toy_model, mixed):
        import gc
        import weakref

        from interp.engine.receiver_gradients import sender_run
        from interp.methods.contrastive import GroupStream

        def run(w, tokens, is_base):
            kept = sender_run(w, w.W_E[tokens].detach())
            return kept, kept.logits

        stream = GroupStream(toy_model, mixed, "logit_diff", "noising", run, "test")
        previous, alive = [], []
        for group in stream:
            gc.collect()
            alive.append(sum(ref() is not None for ref in previous))
            previous = [weakref.ref(group.clean), weakref.ref(group.corrupted)]
            del group
        assert alive == [0, 0]  # the first group's runs were gone when the second was yielded
        assert stream.finish().clean_value == pytest.approx(eap(toy_model, mixed).clean)
