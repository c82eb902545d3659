"""Circuit figures: the edge graph (layers as rows, nodes as boxes) and the faithfulness curve.

`circuit_graph` draws the strongest edges of a score vector: one row per layer (input at the bottom,
logits at the top), a box per head and one per MLP; an edge's colour is its sign (blue: it carries the
clean behaviour, red: against it, by importance) and its width |score|; hovering an edge shows its name
and score. A slider chooses how many edges are shown (all drawn once, the slider toggles visibility),
so the figure stays interactive offline, in notebooks and in self-contained reports.
"""

from __future__ import annotations

import plotly.graph_objects as go
from jaxtyping import Float
from torch import Tensor

SHOWN = (5, 10, 20, 50, 100, 200)


def _positions(n_layers: int, n_heads: int) -> dict[str, tuple[float, float]]:
    """Node name -> (x, y): heads at x = 0..H-1 and the MLP at x = H on row L; input and logits centred."""
    places = {"input": ((n_heads) / 2, -1.0), "logits": ((n_heads) / 2, float(n_layers))}
    for layer in range(n_layers):
        for head in range(n_heads):
            places[f"a{layer}.h{head}"] = (float(head), float(layer))
        places[f"m{layer}"] = (float(n_heads) + 0.6, float(layer))
    return places


def circuit_graph(
    edges: list[str],
    importance: Float[Tensor, " edge"],
    n_layers: int,
    n_heads: int,
    title: str,
    *,
    shown: tuple[int, ...] = SHOWN,
) -> go.Figure:
    """The `max(shown)` edges of largest |importance| (positive = carries the clean behaviour)."""
    places = _positions(n_layers, n_heads)
    order = importance.abs().argsort(descending=True, stable=True)[: max(shown)].tolist()
    largest = max(importance.abs().max().item(), 1e-12)
    figure = go.Figure()
    for rank, i in enumerate(order):
        sender, receiver = edges[i].split("->")
        node = receiver.split("<")[0]
        (x0, y0), (x1, y1) = places[sender], places[node]
        value = importance[i].item()
        figure.add_trace(
            go.Scatter(
                x=[x0, x1],
                y=[y0 + 0.15, y1 - 0.15],
                mode="lines",
                line={
                    "color": "#2166ac" if value >= 0 else "#b2182b",
                    "width": 0.5 + 6 * abs(value) / largest,
                },
                hovertext=f"{edges[i]}: {value:+.4f}",
                hoverinfo="text",
                showlegend=False,
                visible=rank < shown[min(1, len(shown) - 1)],
            )
        )
    names = list(places)
    figure.add_trace(
        go.Scatter(
            x=[places[n][0] for n in names],
            y=[places[n][1] for n in names],
            mode="markers+text",
            text=names,
            textposition="middle center",
            textfont={"size": 9},
            marker={
                "symbol": "square",
                "size": 30,
                "color": "#f4f4f4",
                "line": {"color": "#555", "width": 1},
            },
            hoverinfo="text",
            showlegend=False,
        )
    )
    steps = [
        {
            "label": str(k),
            "method": "update",
            "args": [{"visible": [rank < k for rank in range(len(order))] + [True]}],
        }
        for k in shown
        if k <= len(order) or k == shown[0]
    ]
    figure.update_layout(
        title=title,
        sliders=[
            {"active": min(1, len(steps) - 1), "currentvalue": {"prefix": "edges shown: "}, "steps": steps}
        ],
        xaxis={"visible": False},
        yaxis={
            "tickvals": [-1, *range(n_layers), n_layers],
            "ticktext": ["input", *[f"L{layer}" for layer in range(n_layers)], "logits"],
        },
        height=160 + 90 * (n_layers + 2),
        plot_bgcolor="white",
    )
    return figure


def faithfulness_chart(fractions: list[float], curves: dict[str, list[float]], title: str) -> go.Figure:
    """Faithfulness against the fraction of edges kept (log scale), one line per ranking."""
    figure = go.Figure()
    for name, values in curves.items():
        figure.add_trace(
            go.Scatter(x=[100 * f for f in fractions], y=values, mode="lines+markers", name=name)
        )
    figure.add_hline(y=1.0, line_dash="dot", line_color="#888")
    figure.update_layout(
        title=title,
        xaxis={"title": "edges kept (%)", "type": "log"},
        yaxis={"title": "faithfulness (1 = the full model)"},
    )
    return figure
