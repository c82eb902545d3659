"""The report's section for `dictionary_eval`: each dictionary's metrics as a table, and figures.

Figures: CE loss recovered and explained variance per dictionary (bars), and each dictionary's
log10 latent density histogram (dead latents in the lowest bin), from the `dictionary_metrics` that
results.json holds beside the values.
"""

from __future__ import annotations

import plotly.graph_objects as go

from interp.report.html import Section

KINDS = frozenset({"dictionary_eval"})

# the columns of the table, by metric name: (header, format)
COLUMNS = (
    ("l0", "L0", "{:.2f}"),
    ("explained_variance", "explained variance", "{:.3f}"),
    ("cosine", "cosine", "{:.3f}"),
    ("ce_loss_recovered", "CE loss recovered", "{:.3f}"),
    ("ce_clean", "CE clean", "{:.4f}"),
    ("ce_spliced", "CE spliced", "{:.4f}"),
    ("ce_zero_ablated", "CE zero-ablated", "{:.4f}"),
    ("kl", "KL", "{:.4f}"),
    ("dead_fraction", "dead", "{:.3f}"),
    ("dense_fraction", "dense", "{:.3f}"),
)


def _value(entry: dict, row: int, metric: str) -> float:
    return float(entry["values"][row][entry["labels"]["metric"].index(metric)])


def metric_bars(entry: dict) -> go.Figure:
    """CE loss recovered and explained variance per dictionary, side by side (1 = perfect)."""
    names = entry["labels"]["dictionary"]
    figure = go.Figure()
    for metric, label in (
        ("ce_loss_recovered", "CE loss recovered"),
        ("explained_variance", "explained variance"),
    ):
        ys = [_value(entry, i, metric) for i in range(len(names))]
        figure.add_trace(go.Bar(x=names, y=ys, name=label))
    figure.update_layout(
        title=f"{entry['name']}: CE loss recovered and explained variance (1 = perfect)",
        barmode="group",
        yaxis={"title": "fraction"},
    )
    return figure


def density_histograms(entry: dict) -> go.Figure:
    """Each dictionary's histogram of log10(latent density), one trace per dictionary."""
    figure = go.Figure()
    for name, about in zip(entry["labels"]["dictionary"], entry.get("dictionary_metrics", []), strict=False):
        edges, counts = about["histogram_edges"], about["histogram_counts"]
        centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
        figure.add_trace(go.Bar(x=centres, y=counts, name=name, opacity=0.7))
    figure.update_layout(
        title=f"{entry['name']}: latent density (log10 of the fraction of tokens a latent fires on; dead at left)",
        barmode="overlay",
        xaxis={"title": "log10(density)"},
        yaxis={"title": "latents"},
    )
    return figure


def dictionary_section(entry: dict) -> Section:
    """One section: the table of every dictionary's metrics, the bars and the density histograms."""
    names = entry["labels"]["dictionary"]
    about = entry.get("dictionary_metrics") or [{} for _ in names]
    rows = []
    for i, name in enumerate(names):
        hooks = about[i].get("hook_name", "")
        if about[i].get("hook_name_out") not in (None, hooks):
            hooks = f"{hooks} -> {about[i]['hook_name_out']}"
        cells = [fmt.format(_value(entry, i, metric)) for metric, _, fmt in COLUMNS]
        rows.append(
            [name, f"{about[i].get('architecture', '')} {about[i].get('dictionary_kind', '')}", hooks, *cells]
        )
    best = max(range(len(names)), key=lambda i: _value(entry, i, "ce_loss_recovered"))
    finding = (
        f"{names[best]} recovers {_value(entry, best, 'ce_loss_recovered'):.3f} of the CE loss "
        f"(explained variance {_value(entry, best, 'explained_variance'):.3f}, L0 {_value(entry, best, 'l0'):.1f})"
    )
    tokens = about[0].get("n_tokens")
    on = f" on {tokens:,} tokens" if tokens else ""
    return Section(
        title=f"{entry['name']} ({entry['kind']})",
        explanation=f"{entry.get('explanation', '')} Measured{on}.".strip(),
        figures=[metric_bars(entry), density_histograms(entry)],
        finding=finding,
        unit="fraction of the CE loss recovered",
        table_header=["dictionary", "architecture", "hooks", *[header for _, header, _ in COLUMNS]],
        table_rows=rows,
    )
