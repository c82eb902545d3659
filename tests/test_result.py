"""EffectResult (interp.methods.result): one scale for every method, ranked by effect everywhere."""

from __future__ import annotations

import pytest
import torch
from helpers import ioi_pairs

from interp.methods.activation_patching import sweep
from interp.methods.path_patching import path_patch
from interp.methods.result import EffectResult, top_coords


def result(values, direction="denoising", measures="metric", clean=10.0, corrupted=-2.0) -> EffectResult:
    values = torch.tensor(values)
    return EffectResult("s", ("layer", "head"), values, clean, corrupted, "logit_diff", direction, measures)


class TestEffect:
    def test_denoising_scale(self):
        r = result([[-2.0, 10.0], [4.0, -2.0]])
        assert r.effect().tolist() == [[0.0, 1.0], [0.5, 0.0]]

    def test_noising_scale(self):
        r = result([[10.0, -2.0], [4.0, 10.0]], direction="noising")
        assert r.effect().tolist() == [[0.0, -1.0], [-0.5, 0.0]]

    def test_changes(self):
        r = result([[0.0, -6.0], [3.0, 0.0]], direction="noising", measures="change")
        assert r.effect().tolist() == [[0.0, -0.5], [0.25, 0.0]]

    def test_no_gap_is_an_error_for_effect_but_top_still_ranks(self):
        r = result([[1.0, 3.0]], clean=1.0, corrupted=1.0)
        with pytest.raises(ValueError, match="clean and corrupted metrics are equal"):
            r.effect()
        assert r.top(1)[0][0] == "L0H1"


def test_noising_ranks_the_one_head_that_matters_first():
    """The defect: ranking a noising result by |value| put no-effect heads (value 1) first."""
    values = [[10.0, 10.0, 10.0], [10.0, -2.0, 10.0]]  # noising: 10 (= clean) means no effect
    r = result(values, direction="noising")
    assert r.top(1)[0][0] == "L1H1"
    assert top_coords(r.effect(), 1)[0][0] == (1, 1)
    html = r._repr_html_()
    assert html.index("L1H1") < html.index("L0H0")


def test_path_patching_to_the_logits_ranks_the_name_mover_first(toy_model):
    pairs = ioi_pairs(toy_model.tokenizer, 16, seed=4)
    paths = path_patch(toy_model, pairs, "logits")
    name, _, effect = paths.top(1)[0]
    assert name == "L3H2" and effect < -0.5  # removing its direct path removes most of the behaviour
    html = paths._repr_html_()
    first_row = html[html.index("<tbody>") :]
    assert first_row.index("L3H2") < first_row.index("</tr>")


def test_head_sweep_rows_are_ordered_by_effect(toy_model):
    pairs = ioi_pairs(toy_model.tokenizer, 16, seed=4)
    heads = sweep(toy_model, pairs, "head_out")
    ranked = heads.top(16)
    effects = [abs(e) for _, _, e in ranked]
    assert effects == sorted(effects, reverse=True)
    assert {name for name, _, _ in ranked[:2]} == {"L1H0", "L3H2"}
