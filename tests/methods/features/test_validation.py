"""Feature attribution checked against exact latent patching (`check_feature_attribution`): equal where
the metric is linear in the latents, and, on the toy's IOI pairs with the SAE notebook 07 trains, a
ranking that agrees with exact patching.

Measured on that SAE (seed 0; 640 latents, k = 16, blocks.2.hook_resid_pre) over the toy's IOI pairs
(`build_pairs(ioi, n_pairs=32, seed=0)`, the largest length group: 9 pairs, 283 latents that move):
Pearson 0.92 between estimate and exact effect, top 5 by |estimate| = top 5 by |exact| (5 of 5), 7 of
the top 10. On other prompt samples (n_pairs 32 or 64, seeds 1-3) Pearson stays 0.89-0.92 and the
top-10 overlap 7-9, but the top-5 overlap falls to 2-4: the order among near-equal latents moves. The
estimates are too small throughout (least-squares slope exact ~ 1.7-1.9 x estimate): the base run is
confidently wrong (logit difference about -10) and the gradient there is flatter than the patch."""

from __future__ import annotations

import pytest
import torch
from helpers import ioi_pairs

from interp.base.errors import InputError
from interp.methods.features.validation import check_feature_attribution
from methods.features.test_attribution import dictionary, linear_phi  # noqa: F401 (a fixture)


def test_estimate_equals_exact_where_the_metric_is_linear(linear_phi):  # noqa: F811
    pairs = ioi_pairs(linear_phi.tokenizer, 3)
    sae = dictionary("sae", linear_phi.cfg.d_model, "blocks.1.hook_resid_post")
    check = check_feature_attribution(linear_phi, sae, pairs)
    assert len(check.latents) > 5 and float(check.exact.abs().max()) > 1e-3
    torch.testing.assert_close(
        check.estimate, check.exact, rtol=0, atol=1e-3 * float(check.exact.abs().max())
    )
    assert check.pearson() > 0.999 and check.slope() == pytest.approx(1.0, abs=1e-2)
    assert check.overlap(5) == 5


def test_refuses_what_it_cannot_check(toy_model):
    pairs = ioi_pairs(toy_model.tokenizer, 2)
    sae = dictionary("sae", 160, "blocks.2.hook_resid_pre")
    same = type(pairs)(pairs.clean_tokens, pairs.clean_tokens, pairs.lengths, pairs.answer, pairs.wrong)
    with pytest.raises(InputError, match="no latent"):
        check_feature_attribution(toy_model, sae, same)


@pytest.mark.slow
def test_on_the_toy_ioi_pairs_attribution_ranks_latents_as_exact_patching_does(toy_model):
    from dictionaries.conftest import toy_corpus

    from interp.data.tasks import build_pairs
    from interp.data.tasks.options import TaskConfig
    from interp.dictionaries import make_dictionary, train_from_model

    torch.manual_seed(0)  # as notebook 07: the same SAE, trained the same way
    train = toy_corpus(20, rows=64, seed=0)
    sae = make_dictionary("topk", d_in=160, d_sae=640, k=16, hook_name="blocks.2.hook_resid_pre")
    n_tokens = sum(int(mask.sum()) for _, mask in train)
    train_from_model(toy_model, train, [sae], batch_tokens=1024, buffer_tokens=16384, n_tokens=n_tokens)
    pairs = build_pairs(TaskConfig(name="ioi", n_pairs=32), toy_model, seed=0)
    pairs = pairs.select(max(pairs.length_groups(), key=len))
    check = check_feature_attribution(toy_model, sae, pairs)
    assert len(check.latents) > 50
    assert check.pearson() >= 0.85  # measured 0.92 here, 0.89-0.92 on other samples
    assert check.overlap(5) >= 3 and check.overlap(10) >= 6  # measured 5 and 7
    assert check.slope() > 1  # attribution under-estimates here (measured 1.66): the notebook says so
    assert check.base_metric < 0 < check.all_latents_exact
