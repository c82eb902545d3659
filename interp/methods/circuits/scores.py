"""Edge scores: one value per edge of a `Graph`, from exact edge patching, EAP or EAP-IG."""

from __future__ import annotations

import html
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.base.html import html_table
from interp.methods.circuits.graph import Graph
from interp.methods.result import EffectResult


class EdgeScores(EffectResult):
    """Edge scores are the one result type: an `EffectResult` over dims `("edge",)` with the graph's edge
    names as labels, `measures="change"`; `values[e]` for `graph.edge_names[e]` (mean over prompts, or
    `edge batch` with `per_prompt`).

    Every method scores an edge by the metric change it causes or is estimated to cause: the metric with
    that one edge carrying the source run's value into its receiver, minus the base run's metric
    (noising: base = clean run, source = corrupted; denoising: the mirror). `importance()` (inherited)
    signs it so that positive carries the clean behaviour; `select`, `top` and the table rank by it.
    """

    def __init__(
        self,
        graph: Graph,
        values: Float[Tensor, " edge *batch"],
        method: str,
        direction: str,
        metric: str,
        clean: float,
        corrupted: float,
        per_prompt: bool = False,
        extra: dict | None = None,
    ):
        super().__init__(
            site="edges",
            dims=("edge",),
            values=values,
            clean=clean,
            corrupted=corrupted,
            metric=metric,
            direction=direction,
            measures="change",
            per_prompt=per_prompt,
            extra=extra if extra is not None else {},
            labels={"edge": graph.edge_names},
        )
        self.graph = graph
        self.method = method

    def __repr__(self) -> str:
        return (
            f"EdgeScores({self.method}, {self.direction}, {self.metric}, {self.graph.n_edges} edges of "
            f"{self.graph}, clean {self.clean:.4f}, corrupted {self.corrupted:.4f})"
        )

    @property
    def edges(self) -> list[str]:
        return self.graph.edge_names

    def matrix(self) -> Float[Tensor, "sender receiver"]:
        """The scores as EAP-IG's [n_forward, n_backward] matrix (0 where there is no edge)."""
        return self.graph.to_matrix(self.mean_values())

    def top(self, k: int = 10, *, absolute: bool = True) -> list[tuple[str, float]]:  # type: ignore[override]
        """The k edges that matter most, as (name, score): by |importance| (= |score|), or with
        `absolute=False` by importance (the edges that carry the clean behaviour most, first)."""
        values, ranking = self.mean_values(), self.importance()
        order = (ranking.abs() if absolute else ranking).argsort(descending=True, stable=True)[:k]
        return [(self.edges[i], values[i].item()) for i in order.tolist()]

    def _repr_html_(self) -> str:
        head = (
            f"<b>{html.escape(self.method)}</b> ({html.escape(self.direction)}, {html.escape(self.metric)}); "
            f"{self.graph.n_edges} edges; clean {self.clean:.4f}, corrupted {self.corrupted:.4f}"
        )
        importance = self.importance()
        rows = [
            [name, f"{value:+.4f}", f"{importance[self.graph.edge_position(name)].item():+.4f}"]
            for name, value in self.top(10)
        ]
        note = (
            "Ranked by |importance|: the metric change, signed so that positive carries the clean behaviour."
        )
        table = html_table(["edge", "metric change", "importance"], rows)
        return f"<div>{head}<br><small>{html.escape(note)}</small>{table}</div>"


def stack_scores(
    parts: list[tuple[Int[Tensor, " _batch"], Float[Tensor, "edge _batch"]]], n_edges: int, n: int
) -> Float[Tensor, "edge batch"]:
    """Per-group [edge, group batch] values scattered into [edge, batch] in dataset order."""
    out = torch.zeros(n_edges, n)
    for index, values in parts:
        out[:, index] = values.float().cpu()
    return out


def reduce_scores(
    parts: list[tuple[Int[Tensor, " _batch"], Float[Tensor, "edge _batch"]]],
    n_edges: int,
    n: int,
    reduce: Literal["mean", "none"],
) -> Float[Tensor, " edge *batch"]:
    """[edge] (the mean over prompts, summed where the values are, so only one number per edge moves to
    the host) or [edge, batch] (`stack_scores`)."""
    if reduce == "none":
        return stack_scores(parts, n_edges, n)
    return sum(values.float().sum(-1).cpu() for _, values in parts) / n
