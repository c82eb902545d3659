"""The feature browser in a real browser (Debian's Chromium via Playwright), offline, inlined in a report:
it lists the latents, sorts and searches them, shows the selected card with every token's activation,
and hostile token strings stay text."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import CHROMIUM, open_offline_page

from interp.dictionaries.cards import Context, FeatureCard
from interp.report.html import Report, Section
from interp.viz.features import FeatureBrowser, feature_card_view

HOSTILE = ["<script>alert(1)</script>", "</script>", "<img src=x onerror=alert(1)>", "&amp;"]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)",
)


def card(feature, density, max_act, tokens, values, promoted=" cat", **extra):
    peak = max(range(len(values)), key=values.__getitem__)
    return FeatureCard(
        dictionary="sae", feature=feature, hook_name="blocks.2.hook_resid_pre", hook_name_out="blocks.2.hook_resid_pre",
        kind="sae", n_tokens=1000, density=density, max_act=max_act, mean_act=0.01, mean_active=max_act / 2,
        histogram_counts=[3, 1, 0, 2], histogram_edges=[0.0, 0.5, 1.0, 1.5, 2.0],
        contexts=[Context(tokens, values, peak, row=0)], promoted=[(promoted, 1.5), (" dog", 0.5)],
        suppressed=[(" sun", -0.75)], **extra,
    )  # fmt: skip


CARDS = [
    card(4, 0.02, 3.0, [" When", " Mary", " and"], [0.0, 3.0, 1.5]),
    card(9, 0.30, 1.0, HOSTILE, [0.25, 1.0, 0.0, 0.5], promoted=HOSTILE[2]),
    card(
        1,
        0.10,
        2.0,
        [" park", " John"],
        [2.0, 0.0],
        input_tokens=[(" John", 0.9)],
        upstream=[("emb", 3, 0.4)],
        input_heads=[("L0H1", " Bob", 0.7)],
    ),
]


def open_page(path, playwright):
    return open_offline_page(playwright, path)


def features(page) -> list[str]:
    return page.eval_on_selector_all(".interp-features-row", "rows => rows.map(r => r.dataset.feature)")


def test_the_browser_lists_sorts_searches_and_shows_cards(tmp_path):
    from playwright.sync_api import sync_playwright

    report = Report(title="features").add(
        Section("features", "browse", widgets=[FeatureBrowser(CARDS, "sae")])
    )
    path = report.write(tmp_path / "features.html")
    assert path.read_text().count("function interpFeatures") == 1
    with sync_playwright() as p:
        browser, page, errors, external = open_page(path, p)
        try:
            assert features(page) == ["9", "1", "4"]  # by density, the densest selected first
            assert page.inner_text(".interp-features-selected") == "sae #9"
            tokens = page.eval_on_selector_all(".interp-features-token", "els => els.map(e => e.textContent)")
            assert tokens == HOSTILE and page.locator("img[src='x']").count() == 0
            assert page.inner_text(".interp-features-max") == HOSTILE[1]
            backgrounds = page.eval_on_selector_all(
                ".interp-features-token", "els => els.map(e => getComputedStyle(e).backgroundColor)"
            )
            assert backgrounds[1] == "rgb(33, 102, 172)" and backgrounds[3] == "rgba(33, 102, 172, 0.5)"
            page.select_option(".interp-features-sort", "max_act")
            assert features(page) == ["4", "1", "9"]
            page.select_option(".interp-features-sort", "feature")
            assert features(page) == ["1", "4", "9"]
            page.fill(".interp-features-search", "mary")
            assert features(page) == ["4"] and page.inner_text(".interp-features-count").startswith("1 of 3")
            page.fill(".interp-features-search", "john")  # a context token of #1 and nothing else
            assert features(page) == ["1"]
            page.locator(".interp-features-row[data-feature='1']").click()
            assert page.inner_text(".interp-features-selected") == "sae #1"
            assert '" John"' in page.inner_text(".interp-features-inputs")
            assert "emb #3" in page.inner_text(".interp-features-upstream")
            assert page.inner_text(".interp-features-heads tr") == 'L0H1 " Bob"\t+0.7000'
            assert page.locator(".interp-features-hist rect").count() == 4
            assert '" cat"' in page.inner_text(".interp-features-promoted")
            assert "-0.7500" in page.inner_text(".interp-features-suppressed")
            page.fill(".interp-features-search", "")
            assert len(features(page)) == 3
            assert errors == [] and external == []
        finally:
            browser.close()


def test_one_card_alone_has_no_list(tmp_path):
    from playwright.sync_api import sync_playwright

    view = feature_card_view(CARDS[0])
    path = Report(title="card").add(Section("card", "one", widgets=[view])).write(tmp_path / "card.html")
    with sync_playwright() as p:
        browser, page, errors, external = open_page(path, p)
        try:
            assert page.locator(".interp-features-row").count() == 0
            assert page.inner_text(".interp-features-selected") == "sae #4"
            assert page.inner_text(".interp-features-max") == " Mary"
            assert errors == [] and external == []
        finally:
            browser.close()
