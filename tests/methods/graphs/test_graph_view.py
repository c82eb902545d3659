"""The graph view in a real browser (Debian's Chromium via Playwright), offline: hover, click, slider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import CHROMIUM, open_offline_page

from interp.methods.graphs.graph_json import read_graph_json
from interp.viz.graph_view import GraphView

THEIRS = Path(__file__).parent / "data" / "circuit_tracer_graph.json"
HOSTILE = "<img src=x onerror=alert(1)>"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)"
)


def test_the_view_holds_every_node_and_link_of_the_file():
    graph = read_graph_json(THEIRS)
    view = GraphView(graph)
    assert [n["id"] for n in view.data["nodes"]] == [n["node_id"] for n in graph.nodes]
    assert len(view.data["links"]) == len(graph.links) and view.data["n_layers"] == 2
    rows = {n["id"]: n["row"] for n in view.data["nodes"]}
    assert rows == {"0_7_1": 0, "1_12_1": 1, "0_1_0": 1, "E_464_0": -1, "E_3797_1": -1, "3_318_1": 2}


def test_hover_click_and_slider(tmp_path):
    from playwright.sync_api import sync_playwright

    data = json.loads(THEIRS.read_text())
    data["metadata"]["prompt_tokens"][0] = HOSTILE
    path = tmp_path / "view.html"
    view = GraphView(data, title="a <b>graph</b>", cards={"1_12_1": {"promotes": [HOSTILE, " sat"]}})
    path.write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{view.html()}</body></html>"
    )
    with sync_playwright() as p:
        browser, page, errors, external = open_offline_page(p, path)
        try:
            assert page.locator(".interp-graph-node").count() == 6
            assert page.inner_text(".interp-graph-count") == "6 nodes, 5 links shown"
            assert page.inner_text(".interp-graph-title") == "a <b>graph</b>"
            tokens = page.eval_on_selector_all(".interp-graph-token", "els => els.map(e => e.textContent)")
            assert tokens == [HOSTILE, " cat⏎"]
            assert page.locator("img").count() == 0
            # hover: the node's details
            page.locator(".interp-graph-node[data-id='1_12_1']").hover()
            details = page.inner_text(".interp-graph-details")
            assert details.startswith("L1 F12  (feature, L1, position 1") and "activation: +1.2500" in details
            assert "from: L0 F7 +0.7500" in details and "to: Output" in details
            assert f'promotes: "{HOSTILE}" " sat"' in details
            # click: the paths through L0 F7 (token 1 -> it -> L1 F12 -> the logit) stay lit
            page.locator(".interp-graph-node[data-id='0_7_1']").click()
            lit = page.eval_on_selector_all(
                ".interp-graph-node[data-lit='1']", "els => els.map(e => e.dataset.id)"
            )
            assert sorted(lit) == sorted(["E_3797_1", "0_7_1", "1_12_1", "3_318_1"])
            lit_links = page.eval_on_selector_all(
                ".interp-graph-link[data-lit='1']",
                "els => els.map(e => e.dataset.source + '>' + e.dataset.target)",
            )
            assert sorted(lit_links) == sorted(["E_3797_1>0_7_1", "0_7_1>1_12_1", "1_12_1>3_318_1"])
            opacity = page.locator(".interp-graph-node[data-id='0_1_0']").evaluate("e => e.style.opacity")
            assert opacity == "0.15"
            page.locator(".interp-graph-node[data-id='0_7_1']").click()  # again: cleared
            assert page.locator(".interp-graph-node[data-lit='1']").count() == 0
            # the slider: influence <= 0.3 keeps L1 F12 (0.22) and drops L0 F7 (0.41) and the error (0.9)
            page.locator(".interp-graph-slider").fill("0.3")
            assert page.inner_text(".interp-graph-count") == "4 nodes, 2 links shown"
            assert (
                page.locator(".interp-graph-node[data-id='0_7_1']").evaluate("e => e.style.display") == "none"
            )
            # a supernode lights its members and what they lead to and come from
            page.locator(".interp-graph-slider").fill("1")
            page.locator(".interp-graph-supernode").click()
            lit = page.eval_on_selector_all(
                ".interp-graph-node[data-lit='1']", "els => els.map(e => e.dataset.id)"
            )
            assert sorted(lit) == sorted(["E_3797_1", "E_464_0", "0_7_1", "1_12_1", "3_318_1"])
            assert errors == [] and external == []
        finally:
            browser.close()
