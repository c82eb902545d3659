"""Self-contained HTML reports: one file, plotly.js inlined once, no external URL, text escaped.

Every string that reaches the page (token strings, config values, titles) goes through
`html.escape`, so a token such as `<img src=x onerror=...>` shows literally instead of becoming
markup. Figures are embedded as JSON inside a `<script>` with `<`, `>` and `&` escaped as
unicode escapes, so no string in a figure can close the script tag. plotly.js and, when the page
has attention widgets, the circuitsvis bundle are inlined once each.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from interp.base.files import write_atomic
from interp.base.html import html_table, script_json
from interp.model.info import versions

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; padding: 0 1rem;
       color: #222; overflow-wrap: anywhere; }
.plotly-figure, .interp-explorer-root, .interp-attention-block, .interp-features-root { max-width: 100%;
  overflow-x: auto; }
.interp-explorer { overflow-wrap: normal; }
.interp-explorer-reading, .interp-explorer-position { overflow-wrap: anywhere; }
table.facts th { font-weight: normal; }
.unit { color: #555; font-size: .9em; }
header { border-bottom: 1px solid #ccc; margin-bottom: 1rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
td, th { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; font-size: .9rem; }
th { background: #f4f4f4; }
section { margin: 2rem 0; }
.explain { max-width: 75ch; line-height: 1.45; }
code, pre { background: #f6f6f6; padding: .1rem .3rem; }
.summary { background: #f7f9fc; border: 1px solid #d8e0ee; padding: .5rem 1rem; }
.blocked { background: #fff3cd; border: 1px solid #e0c36c; padding: .75rem 1rem; margin: 1rem 0; }
nav ol { columns: 2; }
"""

# Shown until the page's first script removes it: a browser or viewer that blocks scripts (JupyterLab
# opens HTML files in a sandboxed frame) would otherwise show blank space where every figure goes.
BLOCKED_NOTICE = (
    "<div id='interp-blocked' class='blocked'><b>The figures of this report need JavaScript, which this "
    "viewer blocked.</b> The tables and text below are complete. To see the figures, open the file in a "
    "web browser (it needs no network), or in JupyterLab click <i>Trust HTML</i> in the file's toolbar."
    "</div><script>document.getElementById('interp-blocked').remove();</script>"
)


@dataclass
class Section:
    """One report section: a title, an explanation, figures, widgets and a top-k table."""

    title: str
    explanation: str
    figures: list[go.Figure] = field(default_factory=list)
    finding: str = ""  # one line for the report's summary, e.g. the top components and their values
    unit: str = ""  # what one value is measured in, shown beside the finding in the summary
    table_header: list[str] = field(default_factory=list)
    table_rows: list[list] = field(default_factory=list)
    widgets: list = field(
        default_factory=list
    )  # objects with .html(include_bundle=False), e.g. AttentionPatterns


@dataclass
class Report:
    """Build with `add`, then `write(path)`. The page leads with what was found: `lead` (sentences, e.g.
    the baseline) and each section's `finding`, linked to its section; then a table of contents, the
    sections, and `header` (model, task and config facts) at the end."""

    title: str
    header: dict[str, str] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)
    lead: list[str] = field(default_factory=list)

    def add(self, section: Section) -> Report:
        """Append a section; returns the report."""
        self.sections.append(section)
        return self

    def render(self) -> str:
        """The whole page as one self-contained HTML string."""
        facts = dict(self.header)
        facts.update({f"version {k}": v for k, v in versions().items()})
        facts["written"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        parts = [
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>{html.escape(self.title)}</title><style>{STYLE}</style>",
            f"<script>{get_plotlyjs()}</script></head><body>",
            f"<header><h1>{html.escape(self.title)}</h1></header>",
            BLOCKED_NOTICE,
            self._summary(),
            "<nav><h2>Contents</h2><ol>"
            + "".join(
                f"<li><a href='#section-{i}'>{html.escape(section.title)}</a></li>"
                for i, section in enumerate(self.sections)
            )
            + "<li><a href='#run-details'>Run details</a></li></ol></nav>",
        ]
        from interp.viz.attention import AttentionPatterns, circuitsvis_bundle
        from interp.viz.explorer import HeadExplorer, explorer_js

        widgets = [widget for section in self.sections for widget in section.widgets]
        if any(isinstance(widget, AttentionPatterns) for widget in widgets):
            parts.insert(3, f"<script>{circuitsvis_bundle()}</script>")  # once, in <head>
        if any(isinstance(widget, HeadExplorer) for widget in widgets):
            parts.insert(3, f"<script>{explorer_js()}</script>")
        for bundle in dict.fromkeys(w.bundle_js() for w in widgets if hasattr(w, "bundle_js")):
            parts.insert(3, f"<script>{bundle}</script>")  # a widget's renderer, once per page
        figure_specs = []
        for s_index, section in enumerate(self.sections):
            parts.append(f"<section id='section-{s_index}'><h2>{html.escape(section.title)}</h2>")
            parts.append(f"<p class='explain'>{html.escape(section.explanation)}</p>")
            for f_index, figure in enumerate(section.figures):
                div_id = f"fig-{s_index}-{f_index}"
                parts.append(f"<div id='{div_id}' class='plotly-figure'></div>")
                figure_specs.append({"id": div_id, "figure": json.loads(figure.to_json())})
            for widget in section.widgets:
                parts.append(widget.html(include_bundle=False))
            if section.table_rows:
                parts.append(html_table(section.table_header, section.table_rows))
            parts.append("</section>")
        parts.append("<section id='run-details'><h2>Run details</h2>")
        parts.append(_facts_table(facts) + "</section>")
        parts.append(
            "<script>const FIGURES = " + script_json(figure_specs) + ";\nfor (const f of FIGURES) {"
            " Plotly.newPlot(f.id, f.figure.data, f.figure.layout || {}, {responsive: true}); }"
            "</script></body></html>"
        )
        return "\n".join(parts)

    def _summary(self) -> str:
        """The lead sentences and one linked line per section that has a finding."""
        rows = [
            f"<li><a href='#section-{i}'>{html.escape(section.title)}</a>"
            + (f" <span class='unit'>[{html.escape(section.unit)}]</span>" if section.unit else "")
            + f": {html.escape(section.finding)}</li>"
            for i, section in enumerate(self.sections)
            if section.finding
        ]
        if not self.lead and not rows:
            return ""
        lead = "".join(f"<p>{html.escape(line)}</p>" for line in self.lead)
        return f"<div class='summary'><h2>Summary</h2>{lead}<ul>{''.join(rows)}</ul></div>"

    def write(self, path: str | Path) -> Path:
        """Render and write atomically to `path`."""
        return write_atomic(path, self.render())


def _facts_table(facts: dict[str, str]) -> str:
    """Run details as rows of (fact, value), each fact a row header: no empty header row above them."""
    body = "".join(
        f"<tr><th scope='row'>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>"
        for key, value in facts.items()
    )
    return f"<table class='facts'><tbody>{body}</tbody></table>"
