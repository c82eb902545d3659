"""Evaluation: the metrics against their definitions, and through the model against a hand-built splice."""

from __future__ import annotations

import pytest
import torch

from interp.base.errors import InputError
from interp.dictionaries import make_dictionary
from interp.dictionaries.evaluation import evaluate_dictionary, evaluate_on_model
from interp.model.cache import cache_activations
from interp.model.hooks import active_hook_count


def identity_sae(d: int, hook_name: str):
    """ReLU SAE with latents +x and -x: relu(x) - relu(-x) = x exactly."""
    sae = make_dictionary("relu", d_in=d, d_sae=2 * d, hook_name=hook_name)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_activation_metrics_follow_their_definitions():
    d = make_dictionary("topk", d_in=8, d_sae=20, k=3)
    with torch.no_grad():
        d.b_enc[5] = -1e6  # latent 5 never fires
    x = torch.randn(1000, 8) * torch.linspace(0.5, 2, 8)
    m = evaluate_dictionary(d, x, batch_tokens=300, dense_threshold=0.2, bins=10)
    with torch.no_grad():
        acts, out = d.encode(x), d(x)
    density = (acts > 0).float().mean(0)
    ev = 1 - (x - out).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert m.n_tokens == 1000 and m.l0 == pytest.approx(3.0)
    assert m.explained_variance == pytest.approx(float(ev), rel=1e-5) and m.fvu == pytest.approx(
        1 - float(ev), rel=1e-5
    )
    assert m.cosine == pytest.approx(float(torch.nn.functional.cosine_similarity(out, x).mean()), rel=1e-5)
    assert m.mse == pytest.approx(float((x - out).pow(2).sum(-1).mean()), rel=1e-5)
    torch.testing.assert_close(m.density, density)
    assert m.dead_fraction == pytest.approx(float((density == 0).float().mean()))
    assert m.dead_fraction >= 1 / 20
    assert m.dense_fraction == pytest.approx(float((density > 0.2).float().mean()))
    assert int(m.histogram_counts.sum()) == 20 and int(m.histogram_counts[0]) == int((density == 0).sum())
    assert set(m.to_dict()) >= {"l0", "explained_variance", "histogram_counts"}


def test_a_perfect_dictionary_explains_all_variance():
    x = torch.randn(500, 6) * 3 + 1
    m = evaluate_dictionary(identity_sae(6, "x"), x)
    assert m.explained_variance == 1.0 and m.cosine == pytest.approx(1.0)


def test_a_transcoder_is_evaluated_against_its_targets():
    tc = make_dictionary("relu", d_in=6, d_sae=12, kind="transcoder", d_out=3)
    x, y = torch.randn(200, 6), torch.randn(200, 3)
    with torch.no_grad():
        out = tc(x)
    m = evaluate_dictionary(tc, x, targets=y)
    assert m.explained_variance == pytest.approx(
        float(1 - (y - out).pow(2).sum() / (y - y.mean(0)).pow(2).sum()), rel=1e-5
    )
    with pytest.raises(InputError, match="targets="):
        evaluate_dictionary(tc, x)


class TestThroughTheModel:
    def test_an_exact_reconstruction_recovers_all_the_loss(self, toy_model, toy_batches):
        sae = identity_sae(160, "blocks.2.hook_resid_pre")
        m = evaluate_on_model(toy_model, sae, toy_batches[:2])
        assert m.ce_spliced == m.ce_clean < m.ce_zero_ablated
        assert m.ce_loss_recovered == 1.0 and m.kl == pytest.approx(0.0, abs=1e-7)
        assert m.explained_variance == 1.0 and active_hook_count(toy_model) == 0

    def test_ce_and_kl_equal_a_splice_built_by_hand(self, toy_model, toy_batches):
        """Reference: the transcoder's output computed from a cached clean forward, then written
        into a second forward with a plain hook; zero ablation likewise."""
        tc = make_dictionary(
            "topk", d_in=160, d_sae=64, k=8, kind="transcoder",
            hook_name="blocks.1.ln1.hook_normalized", hook_name_out="blocks.1.hook_mlp_out",
        )  # fmt: skip
        tokens, mask = toy_batches[0]
        m = evaluate_on_model(toy_model, tc, [(tokens, mask)])
        with torch.no_grad():
            x = cache_activations(toy_model, tokens, ["blocks.1.ln1.hook_normalized"])[
                "blocks.1.ln1.hook_normalized"
            ]
            written = tc(x)
            clean = toy_model(tokens)
            with toy_model.hooks(fwd_hooks=[("blocks.1.hook_mlp_out", lambda act, hook: written)]):
                spliced = toy_model(tokens)
            with toy_model.hooks(
                fwd_hooks=[("blocks.1.hook_mlp_out", lambda act, hook: torch.zeros_like(act))]
            ):
                zero = toy_model(tokens)
        valid = mask[:, 1:] & mask[:, :-1]

        def ce(logits):
            lp = logits[:, :-1].log_softmax(-1)
            return -lp.gather(-1, tokens[:, 1:, None])[..., 0][valid].mean()

        clean_lp, spliced_lp = clean[:, :-1].log_softmax(-1)[valid], spliced[:, :-1].log_softmax(-1)[valid]
        kl = (clean_lp.exp() * (clean_lp - spliced_lp)).sum(-1).mean()
        assert m.ce_clean == pytest.approx(float(ce(clean)), rel=1e-5)
        assert m.ce_spliced == pytest.approx(float(ce(spliced)), rel=1e-5)
        assert m.ce_zero_ablated == pytest.approx(float(ce(zero)), rel=1e-5)
        recovered = (ce(zero) - ce(spliced)) / (ce(zero) - ce(clean))
        # a ratio of CE differences: the CEs' relative error 1e-5, scaled by the denominator's cancellation
        ratio_tolerance = 1e-4 * max(1.0, m.ce_zero_ablated / abs(m.ce_zero_ablated - m.ce_clean))
        assert m.ce_loss_recovered == pytest.approx(float(recovered), rel=1e-4, abs=ratio_tolerance)
        assert m.kl == pytest.approx(float(kl), rel=1e-4) and m.kl > 0

    def test_hooks_are_removed_when_the_dictionary_fails_and_user_hooks_are_refused(
        self, toy_model, toy_batches
    ):
        sae = identity_sae(160, "blocks.2.hook_resid_pre")

        def broken(x):
            raise RuntimeError("dictionary failed")

        sae.forward = broken
        with pytest.raises(RuntimeError, match="dictionary failed"):
            evaluate_on_model(toy_model, sae, toy_batches[:1])
        assert active_hook_count(toy_model) == 0
        from interp.base.errors import HooksAttachedError

        with toy_model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda act, hook: act)]):
            with pytest.raises(HooksAttachedError):
                evaluate_on_model(toy_model, identity_sae(160, "blocks.2.hook_resid_pre"), toy_batches[:1])
