"""Layer x head heatmaps."""

from __future__ import annotations

import plotly.graph_objects as go
from jaxtyping import Float
from torch import Tensor


def layer_head_heatmap(
    values: Float[Tensor, "layer head"],
    title: str,
    *,
    value_label: str = "value",
    diverging: bool = True,
) -> go.Figure:
    """One cell per head; hover shows `L{layer}H{head}` and the value.

    `diverging=True` (effects that can be negative) uses a red-blue scale centred on 0;
    `False` (scores in [0, 1]) a sequential one from 0.
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
        colorscale="RdBu" if diverging else "Viridis",
        reversescale=diverging,
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
