"""The report section of a `feature_circuit` analysis: the faithfulness and completeness curve over
circuit sizes and the circuit's strongest edges (the whole circuit is `circuit` in results.json)."""

from __future__ import annotations

import plotly.graph_objects as go

from interp.report.html import Section


def curve_figure(curve: dict, title: str) -> go.Figure:
    """Faithfulness and completeness against the number of nodes kept (1 and 0 for a whole circuit)."""
    figure = go.Figure()
    for name in ("faithfulness", "completeness"):
        figure.add_trace(go.Scatter(x=curve["sizes"], y=curve[name], mode="lines+markers", name=name))
    figure.update_layout(
        title=title,
        xaxis_title="nodes in the circuit (top n by |node score|)",
        yaxis_title="(m(C) - m(empty)) / (m(M) - m(empty))",
    )
    return figure


def feature_circuit_sections(entry: dict) -> list[Section]:
    """The sections a feature_circuit entry of results.json adds to the report."""
    curve, circuit = entry["curve"], entry["circuit"]
    meta = circuit["metadata"]
    kept = sum(1 for node in circuit["nodes"] if node["kept"] and node["node_id"] != "metric")
    return [
        Section(
            title=f"{entry['name']}: faithfulness and completeness",
            explanation=(
                f"Every feature node outside the top n (by |node score|, {meta['method']}) ablated to its "
                f"{curve['ablation']} value on the clean prompts (faithfulness), or the top n themselves "
                "(completeness); 1 means the model's metric, 0 the metric with every node ablated "
                f"(m(M) = {curve['full']:.4g}, m(empty) = {curve['empty']:.4g})."
            ),
            figures=[curve_figure(curve, f"{entry['name']}: circuit size")],
            table_header=["nodes", "faithfulness", "completeness"],
            table_rows=[
                [str(n), f"{f:.3f}", f"{c:.3f}"]
                for n, f, c in zip(curve["sizes"], curve["faithfulness"], curve["completeness"], strict=True)
            ],
        ),
        Section(
            title=f"{entry['name']}: strongest edges",
            explanation=(
                f"Direct effects between the {kept} kept nodes (and from the input and the error nodes), the "
                "estimated metric change of patching the source for the target alone; the whole graph, nodes "
                "and links, is this analysis's `circuit` in results.json."
            ),
            table_header=["source", "target", "edge score"],
            table_rows=[[s, t, f"{w:+.4g}"] for s, t, w in entry.get("top_edges", [])],
        ),
    ]
