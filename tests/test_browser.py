"""Reports in a real browser (Debian's Chromium via Playwright), offline: every figure and widget draws,
no console errors, no request leaves file://, and hostile token strings show literally."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from helpers import CHROMIUM, launch_chromium, open_offline_page

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

    with sync_playwright() as p:
        browser, page, errors, external = open_offline_page(p, path, height=1600)
        try:
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


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    """One run of experiments/ioi.toml on the toy, shared by this module's report tests."""
    from interp.cli import main

    out = tmp_path_factory.mktemp("ioi-toy")
    assert main(["run", str(Path(__file__).resolve().parents[1] / "experiments" / "ioi.toml"), "--model", "toy",
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    return out


@contextmanager
def drawn_page(path: Path, width: int = 1200):
    """A Chromium page on `path` (offline), once every figure and widget has drawn."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
            page.goto(path.resolve().as_uri(), wait_until="load")
            page.wait_for_function(
                """() => [...document.querySelectorAll('.plotly-figure')].every(f => f.querySelector('.main-svg'))
                    && [...document.querySelectorAll('.interp-attention')].every(w => w.querySelector('canvas'))""",
                timeout=120_000,
            )
            yield page
        finally:
            browser.close()


@pytest.mark.slow
def test_demo_report_draws_offline(toy_run):
    state = open_offline(toy_run / "report.html", screenshot=ARTIFACTS / "demo-report.png")
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


@pytest.mark.slow
def test_summary_names_each_lines_unit(toy_run):
    """Patching lines are fractions of the gap, ablation and edge lines changes in the metric, DLA lines
    logits: each line says so, and metric/logit values are also given on the gap's scale."""
    results = json.loads((toy_run / "results.json").read_text())
    gap = results["baseline"]["clean"] - results["baseline"]["corrupted"]
    with drawn_page(toy_run / "report.html") as page:
        lines = page.eval_on_selector_all(".summary li", "els => els.map(e => e.innerText)")
        headers = page.eval_on_selector_all(
            "section table th:nth-child(2)", "els => els.map(e => e.innerText)"
        )
    by_name = {line.split(" (", 1)[0]: line for line in lines}
    expected = {
        "patch_head_out": "[normalised metric: 1 = the clean value, 0 = the corrupted one]",
        "path_patch": "[normalised metric: 1 = the clean value, 0 = the corrupted one]",
        "attrib_head_out": "[estimated effect as a fraction of the clean - corrupted gap]",
        "ablate_head": "[logit_diff change, ablated - clean]",
        "dla_head": "[logits: direct contribution to logit(answer) - logit(wrong)]",
        "eap_ig": "[estimated logit_diff change, patched - unpatched]",
        "induction_scores": "[attention score, 0 to 1]",
    }
    for name, unit in expected.items():
        assert unit in by_name[name], by_name[name]
    assert all(re.search(r"\[[^\]]+\]:", line) for line in lines), lines  # every line has its unit
    for name in ("ablate_head", "dla_head", "eap_ig"):  # the metric's units, also on the gap's scale
        pairs = re.findall(r"\(([+-]\d+\.\d+) = ([+-]\d+\.\d+) of the gap\)", by_name[name])
        assert len(pairs) == 3
        for value, fraction in pairs:
            assert abs(float(value) / gap - float(fraction)) <= 0.005 + 1e-9
    assert "of the gap" not in by_name["patch_head_out"]
    assert "value (logit_diff change, ablated - clean)" in headers  # the section's table says it too


@pytest.mark.slow
def test_run_details_table_starts_with_its_facts(toy_run):
    with drawn_page(toy_run / "report.html") as page:
        rows = page.eval_on_selector_all(
            "#run-details tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
        )
    assert rows[0][0] == "model" and rows[0][1].startswith("toy")
    assert all(len(row) == 2 and row[0] and row[1] for row in rows), rows  # no empty header row


@pytest.mark.slow
def test_run_report_figures_colour_sign_one_way_and_route_edges(toy_run):
    """Every figure of the toy run's report that colours by sign does so blue positive, red negative;
    the circuit graph's edges pass over no node they do not join."""
    from figure_checks import assert_edges_clear_nodes, assert_sign_colours, figure_signs

    from interp.report.run_report import build_report

    report = build_report(json.loads((toy_run / "results.json").read_text()))
    unsigned = []
    for section in report.sections:
        for figure in section.figures:
            signs = figure_signs(figure)
            if signs:
                # both signs wherever the run's values have both (a logit lens may stay positive)
                assert_sign_colours(figure, section.title, both=min(signs)[0] < 0 < max(signs)[0])
            else:
                unsigned.append(section.title)
            if section.title.startswith("eap_ig"):
                assert len(assert_edges_clear_nodes(figure)) == 200
    # only scores in 0..1 (a sequential scale) and the faithfulness curves colour nothing by sign
    assert unsigned == ["induction_scores (head_scores)", "circuit_faithfulness (circuit_faithfulness)"]
    assert "blue = positive, red = negative" in report.render()


def test_head_explorer_colours_as_the_heatmaps_do(tmp_path):
    """A head's cell has the colour its value has in the layer x head heatmap: blue positive, red negative."""
    from figure_checks import heatmap_colour, sign_of_colour

    from interp.viz.explorer import HeadExplorer

    grid = torch.tensor([[0.8, -0.5, 0.0], [0.2, -1.0, 0.05]])
    explorer = HeadExplorer("effects", "how to read", "effect", grid, {}, ["a", "b"], None)
    path = (
        Report(title="explorer")
        .add(Section("explorer", "click", widgets=[explorer]))
        .write(tmp_path / "e.html")
    )
    heatmap = layer_head_heatmap(grid, "effects").data[0]
    with drawn_page(path) as page:
        cells = page.eval_on_selector_all(
            ".interp-explorer-head",
            "els => els.map(e => [+e.dataset.layer, +e.dataset.head, getComputedStyle(e).backgroundColor])",
        )
    assert len(cells) == 6
    for layer, head, colour in cells:
        drawn = [float(v) for v in re.findall(r"[\d.]+", colour)[:3]]
        expected = heatmap_colour(heatmap, float(grid[layer, head]))
        assert max(abs(a - b) for a, b in zip(drawn, expected, strict=True)) <= 1.0, (layer, head)
        if abs(grid[layer, head]) > 0.1:
            assert sign_of_colour(drawn) == (1 if grid[layer, head] > 0 else -1)


LONG = "x" * 10_000


def _page_width(path: Path) -> tuple[int, int]:
    with drawn_page(path) as page:
        return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")


def test_a_long_token_keeps_the_page_within_the_viewport(tmp_path):
    """One 10,000-character token (no space to break at) in every place a token reaches: the page
    scrolls vertically only."""
    from interp.viz.explorer import HeadExplorer

    tokens = ["When", LONG, HOSTILE[2], " to"]
    n = len(tokens)
    patterns = torch.tril(torch.ones(2, n, n))
    patterns = patterns / patterns.sum(-1, keepdim=True)
    explorer = HeadExplorer("effects", LONG, "effect", torch.randn(1, 2), {LONG: torch.randn(1, 2)}, tokens,
                            patterns[None].expand(1, 2, n, n))  # fmt: skip
    report = Report(title=f"ioi {LONG}", header={"example clean prompt": "".join(tokens)}, lead=[LONG])
    report.add(
        Section(
            f"heads {LONG}",
            LONG,
            figures=[layer_pos_heatmap(torch.randn(2, n), tokens, LONG)],
            widgets=[AttentionPatterns(patterns, tokens), explorer],
            finding=f"L0H1 {LONG} (+1.0)",
            unit=LONG,
            table_header=["token", LONG],
            table_rows=[[t, t] for t in tokens],
        )
    )
    scroll, viewport = _page_width(report.write(tmp_path / "long.html"))
    assert scroll <= viewport, (scroll, viewport)


@pytest.mark.slow
def test_a_long_token_in_a_run_report_keeps_it_within_the_viewport(toy_run, tmp_path):
    from interp.report.run_report import write_report

    results = json.loads((toy_run / "results.json").read_text())
    example = results["task"]["example"]
    example["clean_tokens"][1] = example["corrupted_tokens"][1] = LONG
    example["answer"] = LONG
    results["attention_example"]["tokens"][1] = LONG
    (tmp_path / "results.json").write_text(json.dumps(results))
    with drawn_page(write_report(tmp_path)) as page:
        scroll, viewport = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        summary = page.inner_text(".summary")
        details = page.inner_text("#run-details")
    assert scroll <= viewport, (scroll, viewport)
    # the summary shows the example shortened; the run details keep every character
    assert len(summary) < 4000 and "characters; in full under Run details" in summary
    assert LONG in details
