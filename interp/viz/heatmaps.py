"""Layer x head heatmaps."""

from __future__ import annotations

import plotly.graph_objects as go
from jaxtyping import Float
from torch import Tensor

from interp.viz.colours import DIVERGING


def layer_head_heatmap(
    values: Float[Tensor, "layer head"],
    title: str,
    *,
    value_label: str = "value",
    diverging: bool = True,
) -> go.Figure:
    """One cell per head; hover shows `L{layer}H{head}` and the value.

    `diverging=True` (effects that can be negative) uses the report's sign convention (blue positive,
    red negative, white 0; `interp.viz.colours`); `False` (scores in [0, 1]) a sequential one from 0.
    """
    data = values.detach().float().cpu()
    n_layers, n_heads = data.shape
    labels = [[f"L{layer}H{head}" for head in range(n_heads)] for layer in range(n_layers)]
    bound = float(data.abs().max()) or 1.0
    heatmap = go.Heatmap(
        z=data.tolist(),
        x=list(range(n_heads)),
        y=list(range(n_layers)),
        customdata=labels,
        hovertemplate=f"%{{customdata}}<br>{value_label}: %{{z:.4f}}<extra></extra>",
        colorscale=DIVERGING if diverging else "Viridis",
        zmid=0 if diverging else None,
        zmin=-bound if diverging else 0,
        zmax=bound if diverging else max(bound, 1e-9),
        colorbar={"title": {"text": value_label}},
    )
    figure = go.Figure(heatmap)
    figure.update_layout(
        title=title,
        xaxis={"title": "head", "dtick": 1},
        yaxis={"title": "layer", "dtick": 1, "autorange": "reversed"},
        width=120 + 60 * max(n_heads, 4),
        height=160 + 50 * max(n_layers, 3),
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
    )
    return figure


def layer_pos_heatmap(
    values: Float[Tensor, "component pos"],
    tokens: list[str],
    title: str,
    *,
    row_labels: list[str] | None = None,
    value_label: str = "value",
) -> go.Figure:
    """Rows (layers, or layer-head pairs) x positions, the prompt's tokens on the x axis.

    Token strings are shown as data (plotly escapes axis text), numbered so repeats stay distinct;
    colours follow the sign convention of `interp.viz.colours` (blue positive, red negative).
    """
    data = values.detach().float().cpu()
    n_rows, n_pos = data.shape
    rows = row_labels or [f"L{row}" for row in range(n_rows)]
    ticks = [f"{i}: {tok!r}"[:24] for i, tok in enumerate(tokens[:n_pos])]
    bound = float(data.abs().max()) or 1.0
    figure = go.Figure(
        go.Heatmap(
            z=data.tolist(),
            x=list(range(n_pos)),
            y=list(range(n_rows)),
            customdata=[[f"{rows[r]} pos {p}" for p in range(n_pos)] for r in range(n_rows)],
            hovertemplate=f"%{{customdata}}<br>{value_label}: %{{z:.4f}}<extra></extra>",
            colorscale=DIVERGING,  # blue positive, red negative (interp.viz.colours)
            zmid=0,
            zmin=-bound,
            zmax=bound,
            colorbar={"title": {"text": value_label}},
        )
    )
    figure.update_layout(
        title=title,
        xaxis={
            "title": "position (token)",
            "tickvals": list(range(n_pos)),
            "ticktext": ticks,
            "tickangle": -60,
        },
        yaxis={"tickvals": list(range(n_rows)), "ticktext": rows, "autorange": "reversed"},
        width=max(500, 60 + 38 * n_pos),
        height=max(300, 180 + 22 * n_rows),
        margin={"l": 80, "r": 20, "t": 50, "b": 150},
    )
    return figure
