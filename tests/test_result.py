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


class TestOneSignConvention:
    """`importance()`: the change a component causes, positive when it carries the clean behaviour; the
    same for head results and edge scores, and what circuit selection ranks by."""

    @pytest.mark.parametrize("direction", ["denoising", "noising"])
    @pytest.mark.parametrize("measures", ["metric", "change"])
    @pytest.mark.parametrize(("clean", "corrupted"), [(10.0, -2.0), (-3.0, 5.0)])
    def test_importance_is_the_effect_oriented_towards_the_clean_behaviour(
        self, direction, measures, clean, corrupted
    ):
        r = result([[1.0, -4.0], [7.5, 0.25]], direction, measures, clean, corrupted)
        oriented = r.effect() * abs(clean - corrupted) * (1 if direction == "denoising" else -1)
        assert torch.allclose(r.importance(), oriented)
        assert [c for c, _ in top_coords(r.importance(), 4)] == [c for c, _ in top_coords(r.effect(), 4)]

    def test_restoring_and_removing_the_behaviour_are_both_important(self):
        restores = result([[10.0]], "denoising")  # the patched metric reaches the clean one
        removes = result([[-2.0]], "noising")  # the patched metric falls to the corrupted one
        assert restores.importance().item() == removes.importance().item() == 12.0

    def test_edge_scores_are_effect_results_over_edges(self):
        from interp.methods.circuits.graph import Graph
        from interp.methods.circuits.scores import EdgeScores

        graph = Graph(1, 2)
        values = torch.linspace(-1, 1, graph.n_edges)
        scores = EdgeScores(graph, values, "eap", "noising", "logit_diff", 3.0, 1.0)
        assert isinstance(scores, EffectResult) and scores.dims == ("edge",) and scores.measures == "change"
        assert scores.labels["edge"] == graph.edge_names == scores.edges
        name, value, effect = EffectResult.top(scores, 1)[0]  # the general table names edges by label
        assert name == graph.edge_names[0] and value == -1.0 and effect == pytest.approx(-0.5)
        assert torch.equal(scores.importance(), -values)  # noising, clean above corrupted
        assert scores.top(1, absolute=False)[0] == (graph.edge_names[0], -1.0)
        per_prompt = EdgeScores(graph, values[:, None].repeat(1, 3), "eap", "noising", "x", 3.0, 1.0, True)
        assert torch.equal(per_prompt.importance(), scores.importance())

    def test_selection_follows_the_metric_direction(self):
        """A metric where the clean run scores lower (clean 0, corrupted 5): a noising edge that moves the
        metric up by 5 removes the whole behaviour, so it is the most important (was: ranked last)."""
        from interp.methods.circuits.circuit import select
        from interp.methods.circuits.graph import Graph
        from interp.methods.circuits.scores import EdgeScores

        graph = Graph(1, 1)
        values = torch.zeros(graph.n_edges)
        removes, helps = graph.edge_position("a0.h0->logits"), graph.edge_position("m0->logits")
        values[removes], values[helps] = 5.0, -1.0
        scores = EdgeScores(graph, values, "edge_patch", "noising", "loss", 0.0, 5.0)
        assert scores.importance()[removes] == 5.0 and scores.importance()[helps] == -1.0
        assert list(select(scores, top_k=1, absolute=False, prune=False)) == ["a0.h0->logits"]
        assert scores.top(1, absolute=False)[0][0] == "a0.h0->logits"
