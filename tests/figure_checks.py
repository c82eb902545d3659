"""Checks on figure data shared by the figure and report tests: node geometry and sign colours."""

from __future__ import annotations

import itertools
import math


def segment_distance(point, a, b) -> float:
    """Distance from `point` to the segment a-b (plain arithmetic, independent of the figure code)."""
    (px, py), (ax, ay), (bx, by) = point, a, b
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / length2))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def circle_nodes(figure) -> dict[str, tuple[float, float, float]]:
    """name -> (x, y, radius) of the circuit graph's node circles (drawn in data coordinates)."""
    nodes = {}
    for shape in figure.layout.shapes:
        assert shape.type == "circle" and shape.xref == "x" and shape.yref == "y"
        rx, ry = (shape.x1 - shape.x0) / 2, (shape.y1 - shape.y0) / 2
        assert math.isclose(rx, ry)
        nodes[shape.name] = ((shape.x0 + shape.x1) / 2, (shape.y0 + shape.y1) / 2, rx)
    return nodes


def assert_edges_clear_nodes(figure) -> list[str]:
    """Each edge of a circuit graph starts on its sender's circle, ends on its receiver's, and stays
    further than its radius from every other node; returns the edges drawn."""
    nodes = circle_nodes(figure)
    drawn = [trace for trace in figure.data if trace.mode == "lines"]
    for trace in drawn:
        sender, receiver = trace.meta["sender"], trace.meta["receiver"]
        assert trace.meta["edge"].startswith(f"{sender}->{receiver}")
        path = list(zip(trace.x, trace.y, strict=True))
        for (x, y), node in ((path[0], sender), (path[-1], receiver)):
            cx, cy, r = nodes[node]
            assert math.isclose(math.hypot(x - cx, y - cy), r, rel_tol=1e-6), (trace.meta["edge"], node)
        for name, (cx, cy, r) in nodes.items():
            if name in (sender, receiver):
                continue
            nearest = min(segment_distance((cx, cy), a, b) for a, b in itertools.pairwise(path))
            assert nearest > r, (trace.meta["edge"], name, nearest)
    return [trace.meta["edge"] for trace in drawn]


def rgb(colour: str) -> tuple[float, float, float]:
    if colour.startswith("#"):
        return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return tuple(float(v) for v in colour[colour.index("(") + 1 : colour.index(")")].split(",")[:3])


def heatmap_colour(trace, z: float) -> tuple[float, float, float]:
    """The colour plotly draws for `z`: the trace's colour scale (reversed if asked) over zmin..zmax."""
    stops = [(float(at), rgb(c)) for at, c in trace.colorscale]
    if trace.reversescale:
        stops = [(1 - at, c) for at, c in reversed(stops)]
    at = min(1.0, max(0.0, (z - trace.zmin) / (trace.zmax - trace.zmin)))
    for (a, ca), (b, cb) in itertools.pairwise(stops):
        if a <= at <= b:
            t = 0.0 if b == a else (at - a) / (b - a)
            return tuple(x + t * (y - x) for x, y in zip(ca, cb, strict=True))
    raise AssertionError(f"{at} is outside the colour scale")


def sign_of_colour(rgb) -> int:
    """+1 for a blue, -1 for a red (the convention: blue positive, red negative)."""
    r, _, b = rgb
    assert r != b, f"{rgb} is neither red nor blue"  # exact for colours computed from a figure's data
    return 1 if b > r else -1


def figure_signs(figure) -> list[tuple[float, int]]:
    """(value, sign of its colour) for every value that a figure colours by sign."""
    out = []
    for trace in figure.data:
        if trace.type == "heatmap" and trace.zmid == 0:  # diverging; a sequential scale shows 0..1 scores
            out += [(z, sign_of_colour(heatmap_colour(trace, z))) for row in trace.z for z in row if z]
        elif trace.type == "bar" and not isinstance(trace.marker.color, str | None):
            out += [(y, sign_of_colour(rgb(c))) for y, c in zip(trace.y, trace.marker.color, strict=True)]
        elif trace.type == "scatter" and trace.mode == "lines" and trace.meta:  # circuit edges
            out.append((trace.meta["value"], sign_of_colour(rgb(trace.line.color))))
        elif trace.type == "scatter" and not isinstance(trace.marker.color, str | None):
            out += [(y, sign_of_colour(rgb(c))) for y, c in zip(trace.y, trace.marker.color, strict=True)]
    return out


def assert_sign_colours(figure, name: str, both: bool = True) -> None:
    """Every value the figure colours by sign follows the convention; with `both`, it colours at least
    one positive and one negative value."""
    signs = [(value, sign) for value, sign in figure_signs(figure) if value != 0]
    assert signs, name
    if both:
        assert any(v > 0 for v, _ in signs) and any(v < 0 for v, _ in signs), name
    assert all((value > 0) == (sign > 0) for value, sign in signs), (name, signs)
