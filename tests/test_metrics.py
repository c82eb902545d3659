"""Metrics read each prompt's own final-position logits; the normalised score has fixed end points."""

from __future__ import annotations

import pytest
import torch

from interp.data.metrics import make_metric, normalise

LOGITS = torch.tensor([[2.0, 0.0, 1.0, -1.0], [0.0, 3.0, 0.5, 0.5]])
ANSWER, WRONG = torch.tensor([0, 1]), torch.tensor([2, 3])
ALL = torch.arange(2)


def test_logit_diff_prob_and_log_prob():
    assert make_metric("logit_diff", ANSWER, WRONG)(LOGITS, ALL).tolist() == [1.0, 2.5]
    probs = LOGITS.softmax(-1)
    assert torch.allclose(make_metric("prob", ANSWER, WRONG)(LOGITS, ALL), probs[ALL, ANSWER])
    assert torch.allclose(make_metric("log_prob", ANSWER, WRONG)(LOGITS, ALL), probs[ALL, ANSWER].log())


def test_index_selects_each_prompts_own_answer():
    metric = make_metric("logit_diff", ANSWER, WRONG)
    assert metric(LOGITS[[1]], torch.tensor([1])).tolist() == [2.5]
    assert metric(LOGITS[[1]], torch.tensor([0])).tolist() == [
        -0.5
    ]  # prompt 0's answer read on row 1's logits


def test_kl_from_clean_is_zero_on_clean_and_positive_elsewhere():
    metric = make_metric("kl", ANSWER, WRONG, clean_final_logits=LOGITS)
    assert torch.allclose(metric(LOGITS, ALL), torch.zeros(2), atol=1e-6)
    assert (metric(LOGITS.flip(0), ALL) > 0.1).all()
    with pytest.raises(ValueError, match="clean run"):
        make_metric("kl", ANSWER, WRONG)(LOGITS, ALL)


def test_normalise_end_points_and_degenerate_case():
    assert normalise(torch.tensor([3.0, -1.0, 1.0]), 3.0, -1.0).tolist() == [1.0, 0.0, 0.5]
    with pytest.raises(ValueError, match="clean and corrupted metrics are equal"):
        normalise(torch.tensor([1.0]), 2.0, 2.0)


def test_unknown_metric():
    with pytest.raises((ValueError, TypeError), match="logit_diff"):
        make_metric("accuracy", ANSWER, WRONG)
