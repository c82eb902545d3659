"""Line, bar and scatter charts: logit lens, per-layer attribution, ablations, attribution vs exact,
accuracies of probes and DAS along hooks or sizes.

Bars and the logit lens's markers are coloured by their value's sign, as every figure is
(`interp.viz.colours`: blue positive, red negative); grouped bars tell their groups apart by pattern.
"""

from __future__ import annotations

import plotly.graph_objects as go
from jaxtyping import Float
from torch import Tensor

from interp.viz.colours import sign_colour


def logit_lens_chart(
    values: Float[Tensor, " layer"], labels: list[str], title: str, value_label: str
) -> go.Figure:
    """One value per residual-stream reading (the embedding, then after each layer), as a line."""
    ys = values.float().tolist()
    figure = go.Figure(
        go.Scatter(
            x=labels,
            y=ys,
            mode="lines+markers",
            name=value_label,
            line={"color": "#888"},
            marker={"color": [sign_colour(y) for y in ys], "size": 9},
        )
    )
    figure.update_layout(title=title, xaxis={"title": "residual stream after"}, yaxis={"title": value_label})
    return figure


def grouped_bars(
    values: Float[Tensor, "layer component"], groups: list[str], title: str, value_label: str
) -> go.Figure:
    """One bar group per layer (e.g. attention vs MLP direct logit attribution): colour is the sign,
    the pattern the group (the first solid, the others hatched; the title names them)."""
    data = values.float()
    layers = [f"L{layer}" for layer in range(data.shape[0])]
    patterns = [("", "solid"), ("/", "hatched"), (".", "dotted"), ("x", "crossed"), ("+", "gridded")]
    figure = go.Figure(
        [
            go.Bar(
                name=g,
                x=layers,
                y=data[:, i].tolist(),
                marker={
                    "color": [sign_colour(v) for v in data[:, i].tolist()],
                    "pattern": {"shape": patterns[i % len(patterns)][0], "fgcolor": "white"},
                    "line": {"color": "#333", "width": 1},
                },
            )
            for i, g in enumerate(groups)
        ]
    )
    # a legend swatch would show its group's first bar's sign colour: the title names the patterns instead
    key = ", ".join(f"{g} {patterns[i % len(patterns)][1]}" for i, g in enumerate(groups))
    figure.update_traces(showlegend=False)
    figure.update_layout(title=f"{title} ({key})", barmode="group", yaxis={"title": value_label})
    return figure


def ranked_bars(labels: list[str], values: list[float], title: str, value_label: str) -> go.Figure:
    """Components sorted by effect (e.g. the ablation sweep's largest metric changes)."""
    figure = go.Figure(go.Bar(x=labels, y=values, marker_color=[sign_colour(v) for v in values]))
    figure.update_layout(title=title, yaxis={"title": value_label}, xaxis={"title": "component"})
    return figure


def attribution_scatter(
    exact: Float[Tensor, " component"], estimate: Float[Tensor, " component"], labels: list[str], title: str
) -> go.Figure:
    """Attribution-patching estimates against exact patching effects, one point per component."""
    figure = go.Figure(
        go.Scatter(
            x=exact.float().tolist(),
            y=estimate.float().tolist(),
            mode="markers",
            text=labels,
            hovertemplate="%{text}<br>exact %{x:.3f}<br>attribution %{y:.3f}<extra></extra>",
        )
    )
    low = float(min(exact.min(), estimate.min()))
    high = float(max(exact.max(), estimate.max()))
    figure.add_shape(type="line", x0=low, y0=low, x1=high, y1=high, line={"dash": "dot", "color": "grey"})
    figure.update_layout(
        title=title, xaxis={"title": "exact patching"}, yaxis={"title": "attribution patching"}
    )
    return figure


def accuracy_curves(
    values: Float[Tensor, "point measure"],
    points: list[str],
    measures: list[str],
    title: str,
    x_label: str,
    chance: float | None = None,
    y_label: str = "accuracy",
) -> go.Figure:
    """Accuracies along hooks or probe sizes, one line per measure (the method's, then its controls,
    dashed), on a 0..1 axis, with the chance level dotted when given."""
    data = values.float()
    dashes = ["solid", "dash", "dot", "dashdot", "longdash"]
    figure = go.Figure(
        [
            go.Scatter(
                x=points, y=data[:, i].tolist(), mode="lines+markers", name=measure,
                line={"dash": dashes[i % len(dashes)]},
            )
            for i, measure in enumerate(measures)
        ]
    )  # fmt: skip
    if chance is not None:
        figure.add_hline(y=chance, line_dash="dot", line_color="#888", annotation_text=f"chance {chance:.2f}")
    figure.update_layout(
        title=title, xaxis={"title": x_label}, yaxis={"title": y_label, "range": [-0.02, 1.02]}
    )
    return figure
