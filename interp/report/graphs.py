"""The report section of an `attribution_graph` analysis: the interactive graph, its scores and its check
by intervention (the graph's predicted change of the top logit against the measured ones)."""

from __future__ import annotations

from interp.report.html import Section
from interp.viz.graph_view import GraphView


def graph_sections(entry: dict) -> list[Section]:
    """The sections an attribution_graph entry of results.json adds to the report."""
    graph, scores, counts = entry["graph"], entry.get("scores", {}), entry.get("counts", {})
    prompt = "".join(graph["metadata"]["prompt_tokens"])
    facts = [
        ["replacement score", f"{scores.get('replacement', float('nan')):.3f}"],
        ["completeness score", f"{scores.get('completeness', float('nan')):.3f}"],
        ["active features (graph nodes)", f"{counts.get('active', '')} ({counts.get('features', '')})"],
        ["nodes (all / kept)", f"{counts.get('nodes', '')} / {counts.get('kept_nodes', '')}"],
        ["links kept", str(len(graph["links"]))],
    ]
    sections = [
        Section(
            title=f"{entry['name']}: the graph",
            explanation=(
                f"The pruned attribution graph of {prompt!r}: rows are layers (tokens at the bottom, the top logits "
                "above), columns positions; circles are transcoder features, squares error nodes. Hover a node for "
                "its details (a feature: the tokens its decoder row promotes and suppresses through the unembedding), click it to light the paths through it, move the slider to prune further. The same "
                "graph, in circuit-tracer's JSON layout, is this analysis's `graph` in results.json."
            ),
            widgets=[GraphView(graph, title=f"{entry['name']}: {prompt}", cards=entry.get("cards"))],
            table_header=["score", "value"],
            table_rows=facts,
        )
    ]
    checks = entry.get("checks") or []
    if checks:
        sections.append(
            Section(
                title=f"{entry['name']}: checked by intervention",
                explanation=(
                    "Each of the most influential features ablated (set to 0) on its own: the change of the top "
                    "logit (minus the mean logit) that the graph predicts through its edges, beside the change "
                    "measured in the local replacement model (attention, LayerNorm and errors frozen; equal to the "
                    "prediction while no other feature switches on or off) and in the real model with the "
                    "transcoders substituted and the error nodes kept (attention and LayerNorm respond)."
                ),
                table_header=[
                    "feature",
                    "logit",
                    "predicted",
                    "local model",
                    "spliced model",
                    "features switched",
                ],
                table_rows=[
                    [
                        c["node"],
                        repr(c["logit"]),
                        f"{c['predicted']:+.4f}",
                        f"{c['local']:+.4f}",
                        f"{c['spliced']:+.4f}",
                        str(c["flipped_local"]),
                    ]
                    for c in checks
                ],  # fmt: skip
            )
        )
    return sections
