"""Edge scores: one value per edge of a `Graph`, from exact edge patching, EAP or EAP-IG."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from interp.base.html import html_table
from interp.methods.circuits.graph import Graph


@dataclass
class EdgeScores:
    """`values[e]` for `graph.edge_names[e]` (mean over prompts, or `edge batch` with `per_prompt`).

    Every method scores an edge by the metric change it causes or is estimated to cause: the metric with
    that one edge carrying the source run's value into its receiver, minus the base run's metric
    (noising: base = clean run, source = corrupted; denoising: the mirror).
    """

    graph: Graph
    values: Tensor
    method: str
    direction: str
    metric: str
    clean: float
    corrupted: float
    per_prompt: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def edges(self) -> list[str]:
        return self.graph.edge_names

    def mean_values(self) -> Tensor:
        return self.values.mean(-1) if self.per_prompt else self.values

    def importance(self) -> Tensor:
        """Scores signed so that larger means the edge carries more of the clean behaviour.

        Noising scores are (patched - clean): an important edge has a negative score, so importance is
        its negation; denoising scores are (patched - corrupted) and are importance as they are.
        """
        values = self.mean_values()
        return -values if self.direction == "noising" else values

    def matrix(self) -> Tensor:
        """The scores as EAP-IG's [n_forward, n_backward] matrix (0 where there is no edge)."""
        return self.graph.to_matrix(self.mean_values())

    def top(self, k: int = 10, *, absolute: bool = True) -> list[tuple[str, float]]:
        """The k edges with the largest |score| (or score), as (name, score)."""
        values = self.mean_values()
        order = (values.abs() if absolute else values).argsort(descending=True, stable=True)[:k]
        return [(self.edges[i], values[i].item()) for i in order.tolist()]

    def _repr_html_(self) -> str:
        head = (
            f"<b>{html.escape(self.method)}</b> ({html.escape(self.direction)}, {html.escape(self.metric)}); "
            f"{self.graph.n_edges} edges; clean {self.clean:.4f}, corrupted {self.corrupted:.4f}"
        )
        rows = [[name, f"{value:+.4f}"] for name, value in self.top(10)]
        return f"<div>{head}{html_table(['edge', 'metric change'], rows)}</div>"


def stack_scores(parts: list[tuple[Tensor, Tensor]], n_edges: int, n: int) -> Tensor:
    """Per-group [edge, group batch] values scattered into [edge, batch] in dataset order."""
    out = torch.zeros(n_edges, n)
    for index, values in parts:
        out[:, index] = values.float().cpu()
    return out


def reduce_scores(
    parts: list[tuple[Tensor, Tensor]], n_edges: int, n: int, reduce: Literal["mean", "none"]
) -> Tensor:
    """[edge] (the mean over prompts, summed where the values are, so only one number per edge moves to
    the host) or [edge, batch] (`stack_scores`)."""
    if reduce == "none":
        return stack_scores(parts, n_edges, n)
    return sum(values.float().sum(-1).cpu() for _, values in parts) / n
