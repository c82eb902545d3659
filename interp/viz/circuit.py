"""Circuit figures: the edge graph (layers as rows, nodes as circles) and the faithfulness curve.

`circuit_graph` draws the strongest edges of a score vector: one row per layer (input at the bottom,
logits at the top), a circle per head and one per MLP. An edge's colour is its value's sign, as in
every figure (`interp.viz.colours`: blue positive, red negative), its width |value|; hovering an edge
shows its name and value. A slider chooses how many edges are shown (all drawn once, the slider
toggles visibility), so the figure stays interactive offline, in notebooks and in self-contained
reports.

Edges are routed so that none passes over a node it does not join: an edge is drawn straight, or as
a gentle curve, when that clears every other node by a margin; otherwise it runs along the empty
lanes of the grid (up from its sender to the gap above its row, along that gap to a gap between two
columns, up that column gap to the gap below its receiver's row, then into the receiver), corners
rounded. Nodes sit on a unit grid and the axes keep a 1:1 aspect, so the node radius and the
clearance are in the figure's own coordinates (`NODE_RADIUS`, `CLEARANCE`). A head's q, k and v
inputs enter its circle at three different points, left to right.
"""

from __future__ import annotations

import plotly.graph_objects as go
import torch
from jaxtyping import Float
from torch import Tensor

from interp.viz.colours import sign_colour

SHOWN = (5, 10, 20, 50, 100, 200)
NODE_RADIUS = 0.3  # in grid units (one unit between neighbouring heads and layers)
CLEARANCE = 0.06  # how much further than NODE_RADIUS an edge stays from every node it does not join
LABEL_SIZE = 13  # node labels, px
UNIT_PX = 100  # pixels per grid unit
ENTRY = {"q": -0.16, "k": 0.0, "v": 0.16, None: 0.0}  # where a receiving input enters its circle (x)


def _positions(n_layers: int, n_heads: int) -> dict[str, tuple[float, float]]:
    """Node name -> (x, y): heads at x = 0..H-1 and the MLP at x = H on row L; input and logits centred."""
    middle = (n_heads - 1) / 2
    places = {"input": (middle, -1.0)}
    for layer in range(n_layers):
        for head in range(n_heads):
            places[f"a{layer}.h{head}"] = (float(head), float(layer))
        places[f"m{layer}"] = (float(n_heads), float(layer))
    places["logits"] = (middle, float(n_layers))
    return places


def _clearance(paths: Tensor, centres: Tensor) -> Tensor:
    """The distance from each centre [node, 2] to each polyline of `paths` [path, point, 2]: [path, node]."""
    a, b = paths[:, :-1], paths[:, 1:]  # segments [path, seg, 2]
    ab = b - a
    length2 = (ab * ab).sum(-1).clamp_min(1e-12)
    rel = centres[None, :, None, :] - a[:, None]  # [path, node, seg, 2]
    t = ((rel * ab[:, None]).sum(-1) / length2[:, None]).clamp(0, 1)
    nearest = a[:, None] + t[..., None] * ab[:, None]
    return (centres[None, :, None, :] - nearest).norm(dim=-1).amin(-1)


def _bezier(p0: Tensor, control: Tensor, p1: Tensor, n: int = 33) -> Tensor:
    t = torch.linspace(0, 1, n, dtype=torch.float64)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * control + t**2 * p1


def _rounded(points: list[tuple[float, float]], iterations: int = 3) -> Tensor:
    """Chaikin corner cutting with the end points kept: a lane route with rounded corners."""
    path = torch.tensor(points, dtype=torch.float64)
    for _ in range(iterations):
        q = 0.75 * path[:-1] + 0.25 * path[1:]
        r = 0.25 * path[:-1] + 0.75 * path[1:]
        middle = torch.stack([q, r], dim=1).reshape(-1, 2)[1:-1]
        path = torch.cat([path[:1], middle, path[-1:]])
    return path


def _lane_route(
    start: tuple[float, float], end: tuple[float, float], rows: tuple[float, float], lane: float, n_heads: int
) -> list[tuple[float, float]]:
    """Up to the gap above the sender's row, across to a column gap, up it, across below the receiver."""
    xs, xe = start[0], end[0]
    low, high = rows[0] + 0.5 + lane, rows[1] - 0.5 - lane
    if rows[1] - rows[0] <= 1:  # adjacent rows: one gap between them
        return [start, (xs, low), (xe, low), end]
    gaps = [k + 0.5 for k in range(-1, n_heads + 1)]  # between columns (the MLP's column is x = H)
    column = min(gaps, key=lambda g: (abs(g - (xs + xe) / 2), g)) + lane
    return [start, (xs, low), (column, low), (column, high), (xe, high), end]


def _route(
    start: tuple[float, float],
    end: tuple[float, float],
    rows: tuple[float, float],
    others: Tensor,
    lane: float,
    n_heads: int,
    inside: tuple[tuple[float, float], tuple[float, float]],
) -> Tensor:
    """The first path that clears every node in `others` [node, 2] and stays `inside` the axes' ranges:
    straight, a curve, or the lanes."""
    p0 = torch.tensor(start, dtype=torch.float64)
    p1 = torch.tensor(end, dtype=torch.float64)
    chord = p1 - p0
    normal = torch.stack([-chord[1], chord[0]])
    candidates = [torch.stack([p0, p1])]
    for bend in (0.12, -0.12, 0.25, -0.25, 0.4, -0.4):
        candidates.append(_bezier(p0, (p0 + p1) / 2 + bend * normal, p1))
    candidates.append(_rounded(_lane_route(start, end, rows, lane, n_heads)))
    candidates.append(torch.tensor(_lane_route(start, end, rows, lane, n_heads), dtype=torch.float64))
    candidates.append(torch.tensor(_lane_route(start, end, rows, 0.0, n_heads), dtype=torch.float64))
    (x_low, x_high), (y_low, y_high) = inside
    longest = max(len(path) for path in candidates)
    padded = torch.stack([torch.cat([p, p[-1:].expand(longest - len(p), 2)]) for p in candidates])
    fine = ((padded[..., 0] > x_low) & (padded[..., 0] < x_high)).all(-1)
    fine &= ((padded[..., 1] > y_low) & (padded[..., 1] < y_high)).all(-1)
    if len(others):
        fine &= (_clearance(padded, others) > NODE_RADIUS + CLEARANCE).all(-1)
    for path, ok in zip(candidates, fine.tolist(), strict=True):
        if ok:
            return path
    return candidates[-1]  # the lanes clear every node by construction (0.5 - NODE_RADIUS)


def circuit_graph(
    edges: list[str],
    values: Float[Tensor, " edge"],
    n_layers: int,
    n_heads: int,
    title: str,
    *,
    shown: tuple[int, ...] = SHOWN,
    value_label: str = "score",
) -> go.Figure:
    """The `max(shown)` edges of largest |value|, coloured by the sign of their value."""
    places = _positions(n_layers, n_heads)
    names = list(places)
    centres = torch.tensor([places[n] for n in names], dtype=torch.float64)
    order = values.abs().argsort(descending=True, stable=True)[: max(shown)].tolist()
    largest = max(values.abs().max().item(), 1e-12)
    x_range, y_range = (-0.9, n_heads + 0.9), (-1.7, n_layers + 0.7)
    figure = go.Figure()
    for rank, i in enumerate(order):
        sender, receiver = edges[i].split("->")
        node, _, part = receiver.partition("<")
        part = part.rstrip(">") or None
        (xs, ys), (xr, yr) = places[sender], places[node]
        dx = ENTRY.get(part, 0.0)
        start = (xs, ys + NODE_RADIUS)
        end = (xr + dx, yr - (NODE_RADIUS**2 - dx**2) ** 0.5)
        keep = torch.tensor([n not in (sender, node) for n in names])
        lane = 0.04 * ((rank % 5) - 2)  # spreads edges that share a lane
        path = _route(start, end, (ys, yr), centres[keep], lane, n_heads, (x_range, y_range))
        value = values[i].item()
        figure.add_trace(
            go.Scatter(
                x=path[:, 0].tolist(),
                y=path[:, 1].tolist(),
                mode="lines",
                line={"color": sign_colour(value), "width": 1 + 6 * abs(value) / largest},
                opacity=0.85,
                hovertext=f"{edges[i]}: {value:+.4f}",
                hoverinfo="text",
                showlegend=False,
                visible=rank < shown[min(1, len(shown) - 1)],
                meta={"edge": edges[i], "sender": sender, "receiver": node, "value": value},
            )
        )
    figure.add_trace(
        go.Scatter(
            x=[places[n][0] for n in names],
            y=[places[n][1] for n in names],
            mode="text",
            text=names,
            textposition="middle center",
            textfont={"size": LABEL_SIZE, "color": "#222"},
            hovertext=names,
            hoverinfo="text",
            showlegend=False,
        )
    )
    figure.update_layout(
        shapes=[
            {
                "type": "circle",
                "name": n,
                "xref": "x",
                "yref": "y",
                "x0": x - NODE_RADIUS,
                "x1": x + NODE_RADIUS,
                "y0": y - NODE_RADIUS,
                "y1": y + NODE_RADIUS,
                "fillcolor": "#f4f4f4",
                "line": {"color": "#555", "width": 1},
                "layer": "below",
            }
            for n, (x, y) in places.items()
        ]
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
    margin = {"l": 70, "r": 20, "t": 60, "b": 110}
    figure.update_layout(
        title=f"{title} (edge colour: blue positive, red negative; width: |{value_label}|)",
        sliders=[
            {"active": min(1, len(steps) - 1), "currentvalue": {"prefix": "edges shown: "}, "steps": steps}
        ],
        xaxis={"visible": False, "range": x_range, "fixedrange": False},
        yaxis={
            "range": y_range,
            "scaleanchor": "x",
            "scaleratio": 1,
            "showgrid": False,
            "zeroline": False,
            "tickvals": [-1, *range(n_layers), n_layers],
            "ticktext": ["input", *[f"L{layer}" for layer in range(n_layers)], "logits"],
            "tickfont": {"size": LABEL_SIZE},
        },
        width=int(UNIT_PX * (x_range[1] - x_range[0])) + margin["l"] + margin["r"],
        height=int(UNIT_PX * (y_range[1] - y_range[0])) + margin["t"] + margin["b"],
        margin=margin,
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
