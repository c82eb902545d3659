"""One ablation-method spelling: the same name means the same numbers in every method that takes it."""

from __future__ import annotations

from typing import get_args

import pytest
import torch
from helpers import ioi_pairs

from interp.base.errors import InputError
from interp.methods.ablation import Method, ablation_sweep
from interp.methods.circuits.circuit import Mode
from interp.methods.vocabulary import (
    ABLATION_METHODS,
    AblationMethod,
    CircuitAblationMethod,
    ComponentAblationMethod,
    HeadAblationMethod,
    check_method,
)


@pytest.fixture(scope="module")
def pairs(toy_model):
    return ioi_pairs(toy_model.tokenizer, 6, seed=21)


def test_one_literal_for_ablation_and_circuits():
    assert Method is AblationMethod and Mode is CircuitAblationMethod
    assert set(ABLATION_METHODS) == {"zero", "mean", "resample", "counterfactual"}
    for subset in (HeadAblationMethod, ComponentAblationMethod, CircuitAblationMethod):
        assert set(get_args(subset)) <= set(ABLATION_METHODS)


def test_counterfactual_is_resample_from_the_paired_corrupted_prompt(toy_model, pairs):
    counterfactual = ablation_sweep(toy_model, pairs, "counterfactual")
    resampled = ablation_sweep(toy_model, pairs, "resample", reference="corrupted")
    shuffled = ablation_sweep(toy_model, pairs, "resample", reference="shuffled")
    assert torch.equal(counterfactual.values, resampled.values)
    assert not torch.allclose(counterfactual.values, shuffled.values)  # the reference matters


def test_bad_methods_name_what_is_allowed(toy_model, pairs):
    # a name outside the Literal is refused by the type checker in tests, by check_method otherwise
    with pytest.raises(InputError, match="reference='corrupted'"):
        ablation_sweep(toy_model, pairs, "counterfactual", reference="shuffled")
    # values outside a function's subset are refused by the type checker in tests before its body runs;
    # the body's check (what a caller without the checker gets) is check_method over that subset
    with pytest.raises(
        InputError, match=r"method='counterfactual' is not allowed here.*'zero', 'mean', 'resample'"
    ):
        check_method("counterfactual", get_args(ComponentAblationMethod))
    with pytest.raises(
        InputError, match=r"mode='resample' is not allowed here.*'counterfactual', 'mean', 'zero'"
    ):
        check_method("resample", get_args(CircuitAblationMethod), "mode")
    with pytest.raises(InputError, match="option='x' is not allowed; use one of 'zero'"):
        check_method("x", ("zero",), "option")
