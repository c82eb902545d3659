"""The HTML report is self-contained and shows hostile token strings literally."""

from __future__ import annotations

import re

import torch
from plotly.offline import get_plotlyjs

from interp.report.html import Report, Section
from interp.viz.heatmaps import layer_head_heatmap

HOSTILE = ["<script>alert(1)</script>", "</script>", "<img src=x onerror=alert(1)>", "&amp;"]


def build(tmp_path):
    figure = layer_head_heatmap(torch.tensor([[0.5, -1.0], [0.0, 2.0]]), "effects", value_label="effect")
    figure.update_layout(xaxis={"tickvals": [0, 1], "ticktext": HOSTILE[:2]})
    report = Report(title="t <b>", header={"prompt": HOSTILE[0]})
    report.add(
        Section("s", HOSTILE[2], figures=[figure], table_header=["token"], table_rows=[[t] for t in HOSTILE])
    )
    return report.write(tmp_path / "report.html").read_text()


def test_no_external_urls(tmp_path):
    page = build(tmp_path)
    bundle = f"<script>{get_plotlyjs()}</script>"
    assert page.count(bundle) == 1  # plotly.js inlined once; its own source may mention URLs
    page = page.replace(bundle, "")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert not re.search(r"""@import\s+url\(\s*["']?https?:""", page)
    assert page.count("Plotly.newPlot(") == 1  # one loop over all figures, plotly.js included once


def test_hostile_tokens_are_escaped(tmp_path):
    page = build(tmp_path)
    assert "<img src=x onerror" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&amp;amp;" in page  # a literal '&amp;' token stays literal
    body = page.split("</head>", 1)[1]
    # only our scripts: the one that removes the "scripts blocked" notice, and the figures'
    assert body.count("<script>") == 2 and body.count("</script>") == 2
    assert "document.getElementById('interp-blocked').remove();</script>" in body


def test_heatmap_hover_names_heads():
    figure = layer_head_heatmap(torch.tensor([[0.5, -1.0], [0.0, 2.0]]), "effects")
    trace = figure.data[0]
    assert trace.customdata[1][0] == "L1H0" and "%{customdata}" in trace.hovertemplate
    assert trace.zmid == 0 and trace.zmin == -2 and trace.zmax == 2


def test_every_analysis_kind_has_a_unit():
    """The summary says each line's unit: every registered kind has one, with the metric filled in."""
    import interp.runner.config  # noqa: F401  (registers every kind)
    from interp.report.run_report import UNITS, unit_of
    from interp.runner.registry import REGISTRY

    assert set(REGISTRY) <= set(UNITS), set(REGISTRY) - set(UNITS)
    assert unit_of({"kind": "ablate_head"}, "prob") == ("prob change, ablated - clean", "metric")
    # DLA is in logits: on the gap's scale only when the metric is the logit difference
    assert unit_of({"kind": "dla_head"}, "logit_diff")[1] == "logits"
    assert unit_of({"kind": "dla_head"}, "prob")[1] is None
    assert unit_of({"kind": "eap", "unit": "nats"}, "kl") == ("nats", "metric")
