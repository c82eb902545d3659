"""Reports in a real browser (Debian's Chromium via Playwright), offline: every figure and widget draws,
no console errors, no request leaves file://, and hostile token strings show literally."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import CHROMIUM, launch_chromium

from interp.report.html import Report, Section
from interp.viz.attention import AttentionPatterns
from interp.viz.heatmaps import layer_head_heatmap, layer_pos_heatmap

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
HOSTILE = ["<script>alert(1)</script>", "</script>", "<img src=x onerror=alert(1)>", "&amp;", "plain"]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)",
)


def open_offline(path: Path, screenshot: Path | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    errors, external = [], []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1600})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))

            def route(r):
                if r.request.url.startswith("file:"):
                    r.continue_()
                else:
                    external.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(path.resolve().as_uri(), wait_until="load")
            # wait for the drawing itself (never a fixed sleep): every plotly figure has its SVG and
            # every attention widget has content; a generous limit, as CI machines are shared
            page.wait_for_function(
                """() => {
                    const figures = document.querySelectorAll('.plotly-figure');
                    const drawn = document.querySelectorAll('.plotly-figure .main-svg');
                    const widgets = [...document.querySelectorAll('.interp-attention')];
                    return drawn.length >= figures.length
                        && widgets.every(w => w.querySelector('canvas'));
                }""",
                timeout=120_000,
            )
            state = {
                "figures": page.locator(".plotly-figure").count(),
                "drawn": page.locator(".plotly-figure .main-svg").count(),
                "widgets": page.locator(".interp-attention").count(),
                "widgets_drawn": page.eval_on_selector_all(
                    ".interp-attention",
                    "els => els.filter(e => e.querySelector('canvas')).length",
                ),
                "widget_sizes": page.eval_on_selector_all(
                    ".interp-attention",
                    "els => els.map(e => [e.getBoundingClientRect().width, e.getBoundingClientRect().height])",
                ),
                "injected_images": page.locator("img[src='x']").count(),
                "text": page.inner_text("body"),
                "token_lists": page.eval_on_selector_all(
                    ".interp-tokens", "els => els.map(e => e.innerText)"
                ),
                "errors": errors,
                "external": external,
            }
            if screenshot:
                screenshot.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return state


def test_hostile_tokens_render_literally(tmp_path):
    n = len(HOSTILE)
    patterns = torch.tril(torch.ones(2, n, n))
    patterns = patterns / patterns.sum(-1, keepdim=True)
    figure = layer_pos_heatmap(torch.randn(2, n), HOSTILE, "by position")
    report = Report(title="hostile <b>tokens</b>", header={"prompt": "".join(HOSTILE)})
    report.add(
        Section(
            "attention",
            HOSTILE[2],
            figures=[figure, layer_head_heatmap(torch.randn(2, 2), "heads")],
            widgets=[
                AttentionPatterns(patterns, HOSTILE, ["H0", "H1"]),
                AttentionPatterns(patterns, HOSTILE),
            ],
            table_header=["token"],
            table_rows=[[t] for t in HOSTILE],
        )
    )
    state = open_offline(report.write(tmp_path / "hostile.html"))
    assert state["errors"] == [] and state["external"] == []
    assert state["drawn"] >= state["figures"] == 2
    assert state["widgets"] == 2 and state["widgets_drawn"] == 2  # each in its own container
    print("attention widgets, width x height (px):", state["widget_sizes"])
    # the enlarged head is square: held to 720 px wide, it and the selector row fit one screen (a
    # 15-token prompt filled 1100 x 1190 px of a report before)
    assert all(w <= 720 and h <= 900 for w, h in state["widget_sizes"])
    assert state["injected_images"] == 0
    for token in HOSTILE:
        assert token in state["text"], token
        assert all(repr(token) in listed for listed in state["token_lists"]), token


@pytest.mark.slow
def test_demo_report_draws_offline(tmp_path):
    from interp.cli import main

    assert main(["run", str(Path(__file__).resolve().parents[1] / "experiments" / "ioi.toml"), "--out",
                 str(tmp_path), "--quiet"]) == 0  # fmt: skip
    state = open_offline(tmp_path / "report.html", screenshot=ARTIFACTS / "demo-report.png")
    assert state["errors"] == [] and state["external"] == []
    assert state["figures"] >= 8 and state["drawn"] >= state["figures"]
    assert state["widgets"] == 1 and state["widgets_drawn"] == 1
    assert (ARTIFACTS / "demo-report.png").stat().st_size > 50_000


def test_blocked_scripts_get_a_notice_instead_of_a_blank_page(tmp_path):
    """As in JupyterLab's sandboxed HTML viewer: no script runs, so the report says so where the figures
    would be, keeps its summary and tables, and the attention widget explains its empty box."""
    from playwright.sync_api import sync_playwright

    n = 3
    patterns = torch.tril(torch.ones(1, n, n)) / torch.arange(1, n + 1)[:, None]
    report = Report(title="blocked", lead=["Metric logit_diff: clean 2.0, corrupted -1.0."])
    report.add(Section("heads", "what heads do", figures=[layer_head_heatmap(torch.randn(2, 2), "heads")],
                       finding="L1H0 (-0.9)", table_header=["component", "value"], table_rows=[["L1H0", "-0.9"]]))  # fmt: skip
    report.add(Section("attention", "patterns", widgets=[AttentionPatterns(patterns, ["a", "b", "c"])]))
    path = report.write(tmp_path / "blocked.html")
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            for scripts in (False, True):
                page = browser.new_context(java_script_enabled=scripts).new_page()
                page.goto(path.resolve().as_uri(), wait_until="load")
                text = page.inner_text("body")
                assert ("need JavaScript, which this viewer blocked" in text) is not scripts
                assert ("Attention viewer: its JavaScript has not run here" in text) is not scripts
                # the summary leads, links to its section, and the table is there either way
                assert text.index("Summary") < text.index("Contents") < text.index("what heads do")
                assert "heads: L1H0 (-0.9)" in text and page.locator("a[href='#section-0']").count() == 2
                assert page.locator("#section-0 table").count() == 1
        finally:
            browser.close()


def test_head_explorer_clicks_through_heads_and_tokens(tmp_path):
    """Click a head: its pattern and its values; click a row: where that token attends. Hostile tokens
    stay text."""
    from playwright.sync_api import sync_playwright

    from interp.viz.explorer import HeadExplorer

    n = len(HOSTILE)
    patterns = torch.zeros(2, 3, n, n)
    patterns[..., 0] = 1.0  # every head attends to the first token ...
    patterns[1, 2] = torch.eye(n)  # ... except L1H2, which attends to the token itself
    grid = torch.tensor([[0.1, -0.2, 0.0], [0.3, 0.05, -0.9]])
    explorer = HeadExplorer("effects", "how to read", "effect", grid, {"dla": grid * 2}, HOSTILE, patterns)
    report = Report(title="explorer").add(Section("explorer", "click", widgets=[explorer]))
    path = report.write(tmp_path / "explorer.html")
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.resolve().as_uri(), wait_until="load")
            assert page.locator(".interp-explorer-head").count() == 6
            # the head with the largest |value| (L1H2) is selected first: it attends to itself
            assert page.inner_text(".interp-explorer-selected") == "L1H2"
            page.locator(".interp-explorer-pattern tr").nth(3).click()
            assert page.inner_text(".interp-explorer-position").startswith(
                f"position 3 {json.dumps(HOSTILE[3])} attends to: 3 "
            )
            page.locator(".interp-explorer-head[data-layer='0'][data-head='1']").click()
            assert page.inner_text(".interp-explorer-selected") == "L0H1"
            facts = page.inner_text(".interp-explorer-facts")
            assert "effect\t-0.2000" in facts and "dla\t-0.4000" in facts
            page.locator(".interp-explorer-pattern tr").nth(4).click()
            assert page.inner_text(".interp-explorer-position").startswith(
                f"position 4 {json.dumps(HOSTILE[4])} attends to: 0 "
            )
            assert page.locator("img[src='x']").count() == 0 and errors == []
        finally:
            browser.close()
