"""Figures are objects with the data we put in; results objects display themselves in notebooks."""

from __future__ import annotations

import itertools

import pytest
import torch
from figure_checks import assert_edges_clear_nodes, assert_sign_colours, circle_nodes, segment_distance
from helpers import ioi_pairs

from interp.methods.activation_patching import sweep
from interp.methods.direct_logit_attribution import direct_logit_attribution
from interp.methods.logit_lens import logit_lens
from interp.viz.charts import attribution_scatter, grouped_bars, logit_lens_chart, ranked_bars
from interp.viz.heatmaps import layer_pos_heatmap


def test_layer_pos_heatmap_labels_tokens_and_centres_on_zero():
    figure = layer_pos_heatmap(torch.tensor([[1.0, -3.0], [0.5, 0.0]]), [" Mary", "<b>"], "t")
    trace = figure.data[0]
    assert trace.zmid == 0 and trace.zmin == -3 and trace.zmax == 3
    assert list(figure.layout.xaxis.ticktext) == ["0: ' Mary'", "1: '<b>'"]
    assert trace.customdata[1][0] == "L1 pos 0"


def test_charts_carry_their_data():
    lens = logit_lens_chart(torch.tensor([0.0, 1.0, 3.0]), ["embed", "after L0", "after L1"], "lens", "diff")
    assert list(lens.data[0].y) == [0.0, 1.0, 3.0] and list(lens.data[0].x)[0] == "embed"
    bars = grouped_bars(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), ["attn", "mlp"], "dla", "v")
    assert [trace.name for trace in bars.data] == ["attn", "mlp"] and list(bars.data[1].y) == [2.0, 4.0]
    ranked = ranked_bars(["L1H2", "L0H0"], [-2.0, 1.0], "ablation", "change")
    assert list(ranked.data[0].marker.color) == ["#b2182b", "#2166ac"]
    scatter = attribution_scatter(torch.tensor([0.1, 0.9]), torch.tensor([0.0, 0.7]), ["a", "b"], "s")
    assert list(scatter.data[0].text) == ["a", "b"] and len(scatter.layout.shapes) == 1


def test_results_display_themselves(toy_model):
    pairs = ioi_pairs(toy_model.tokenizer, 3, seed=2)
    patch_html = sweep(toy_model, pairs, "head_out")._repr_html_()
    assert "head_out" in patch_html and "effect" in patch_html and "<table>" in patch_html
    assert "logit difference" in direct_logit_attribution(toy_model, pairs)._repr_html_()
    assert "after L3" in logit_lens(toy_model, pairs)._repr_html_()


def test_static_export_uses_the_system_browser(tmp_path, monkeypatch):
    import pytest

    from interp.viz.export import NoBrowserError, find_browser, save_figure

    figure = ranked_bars(["L1H2"], [1.0], "t", "v")
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent")
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(NoBrowserError, match="apt-get install chromium"):
        save_figure(figure, tmp_path / "f.png")
    monkeypatch.undo()
    if find_browser() is None:
        pytest.skip("no Chrome/Chromium on this machine (.ci/run installs Debian's chromium)")
    png = save_figure(figure, tmp_path / "f.png")
    svg = save_figure(figure, tmp_path / "f.svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in svg.read_bytes()[:500]


def test_head_explorer_carries_each_heads_numbers(toy_model):
    """The explorer's grid is DLA, its columns the ablation effects, its patterns the model's own."""
    from helpers import ioi_pairs

    from interp.methods.ablation import ablation_sweep
    from interp.methods.direct_logit_attribution import direct_logit_attribution
    from interp.viz.explorer import NOT_DISPLAYED, head_explorer

    pairs = ioi_pairs(toy_model.tokenizer, 6, seed=1)
    explorer = head_explorer(toy_model, pairs)
    data = explorer.data
    dla = direct_logit_attribution(toy_model, pairs).heads.mean(0)
    assert torch.allclose(torch.tensor(data["grid"]["values"]), dla, atol=1e-5)
    ablated = ablation_sweep(toy_model, pairs, "mean").values
    assert data["columns"][0]["name"] == "mean ablation: metric change"
    assert torch.allclose(torch.tensor(data["columns"][0]["values"]), ablated.float(), atol=1e-5)
    _, cache = toy_model.run_with_cache(pairs.clean_tokens[:1, : int(pairs.lengths[0])])
    assert torch.allclose(
        torch.tensor(data["patterns"][3][2]), cache["blocks.3.attn.hook_pattern"][0, 2], atol=1e-4
    )
    assert data["start"] == list(divmod(int(dla.abs().flatten().argmax()), toy_model.cfg.n_heads))
    bundle = explorer._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in bundle and bundle["text/plain"] == NOT_DISPLAYED


class TestCircuitGraph:
    """Every edge drawn joins its own two nodes and passes over no other; labels are readable."""

    @pytest.mark.parametrize("n_layers, n_heads", [(4, 4), (5, 3), (3, 6)])
    def test_no_edge_crosses_a_node_it_does_not_join(self, n_layers, n_heads):
        from interp.methods.circuits.graph import Graph
        from interp.viz.circuit import circuit_graph

        edges = Graph.of(n_layers, n_heads).edge_names
        values = torch.randn(len(edges), generator=torch.Generator().manual_seed(n_heads))
        figure = circuit_graph(edges, values, n_layers, n_heads, "t", shown=(5, len(edges)))
        nodes = circle_nodes(figure)
        assert len(nodes) == n_layers * (n_heads + 1) + 2
        # the axes keep a 1:1 aspect, so a radius in data units is the drawn radius
        assert figure.layout.yaxis.scaleanchor == "x" and figure.layout.yaxis.scaleratio == 1
        drawn = assert_edges_clear_nodes(figure)
        assert sorted(drawn) == sorted(edges)  # every edge drawn once

    def test_the_reported_crossing_is_routed_around(self):
        """`a1.h0 -> a3.h2<v>` was drawn straight through `a2.h1`; its q, k, v inputs enter apart."""
        from interp.viz.circuit import circuit_graph

        edges = ["a1.h0->a3.h2<q>", "a1.h0->a3.h2<k>", "a1.h0->a3.h2<v>"]
        figure = circuit_graph(edges, torch.tensor([1.0, -2.0, 3.0]), 4, 4, "t")
        nodes = circle_nodes(figure)
        cx, cy, r = nodes["a2.h1"]
        ends = []
        for trace in figure.data[:3]:
            path = list(zip(trace.x, trace.y, strict=True))
            assert min(segment_distance((cx, cy), a, b) for a, b in itertools.pairwise(path)) > r
            ends.append(path[-1])
        assert len(set(ends)) == 3

    def test_labels_are_readable(self):
        from interp.viz.circuit import UNIT_PX, circuit_graph

        figure = circuit_graph(["a0.h0->a1.h0<q>"], torch.tensor([1.0]), 12, 12, "t")
        labels = next(trace for trace in figure.data if trace.mode == "text")
        size = labels.textfont.size
        assert size >= 12 and figure.layout.yaxis.tickfont.size >= 12
        # the longest label ("a11.h11") fits inside its circle at that size (a glyph is ~0.6 em wide)
        diameter_px = 2 * circle_nodes(figure)["a11.h11"][2] * UNIT_PX
        assert max(len(text) for text in labels.text) * 0.6 * size < diameter_px


def test_every_figure_colours_sign_one_way():
    """Blue positive, red negative, in heatmaps, bar charts, the logit lens and the circuit graph."""
    from interp.viz.circuit import circuit_graph
    from interp.viz.heatmaps import layer_head_heatmap

    values = torch.tensor([[0.5, -1.0], [0.1, 2.0]])
    figures = {
        "layer_head_heatmap": layer_head_heatmap(values, "t"),
        "layer_pos_heatmap": layer_pos_heatmap(values, ["a", "b"], "t"),
        "ranked_bars": ranked_bars(["L1H2", "L0H0"], [-2.0, 1.0], "t", "v"),
        "grouped_bars": grouped_bars(values, ["attn", "mlp"], "t", "v"),
        "logit_lens_chart": logit_lens_chart(torch.tensor([-1.0, 0.5, 3.0]), ["e", "0", "1"], "t", "v"),
        "circuit_graph": circuit_graph(["input->a0.h0<q>", "a0.h0->logits"], torch.tensor([-1.0, 2.0]), 1, 1, "t"),
    }  # fmt: skip
    for name, figure in figures.items():
        assert_sign_colours(figure, name)
