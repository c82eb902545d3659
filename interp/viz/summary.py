"""Small HTML summaries that results objects show in notebooks (`_repr_html_`); all text escaped."""

from __future__ import annotations

import html

import torch

from interp.report import html_table


def top_coords(values: torch.Tensor, k: int) -> list[tuple[tuple[int, ...], float]]:
    """The k entries of largest magnitude, as (coordinates, value), largest first."""
    flat = values.flatten()
    order = flat.abs().argsort(descending=True)[:k]
    if values.ndim == 0:  # a scalar: one entry, no coordinates
        return [((), flat[0].item())]
    coords = torch.stack(torch.unravel_index(order, values.shape), dim=-1)
    return [(tuple(c.tolist()), flat[i].item()) for c, i in zip(coords, order, strict=True)]


def top_cells(values: torch.Tensor, dims: tuple[str, ...], k: int = 5) -> list[list[str]]:
    return [
        [" ".join(f"{d}={c}" for d, c in zip(dims, coords, strict=True)), f"{value:+.4f}"]
        for coords, value in top_coords(values, k)
    ]


def patch_result_html(result) -> str:
    values = result.values.mean(-1) if result.per_prompt else result.values
    title = (
        f"<b>{html.escape(result.site)}</b> ({html.escape(result.direction)}, {html.escape(result.metric)})"
    )
    facts = f"dims {html.escape(' x '.join(result.dims) or 'scalar')} {tuple(values.shape)}; clean {result.clean:.4f}, corrupted {result.corrupted:.4f}"
    return f"<div>{title}<br>{facts}{html_table(['largest |value|', 'value'], top_cells(values, result.dims))}</div>"


def dla_html(dla) -> str:
    heads = dla.heads.mean(-1)
    rows = top_cells(heads, ("layer", "head"))
    facts = (
        f"logit difference {dla.logit_diff.mean():.4f} (mean over {dla.logit_diff.numel()} prompts); "
        f"max |components + constants - logit diff| {(dla.total() - dla.logit_diff).abs().max():.1e}"
    )
    return f"<div><b>direct logit attribution</b><br>{html.escape(facts)}{html_table(['head', 'mean DLA'], rows)}</div>"


def logit_lens_html(lens) -> str:
    rows = [
        [label, f"{rank.float().mean():.1f}", f"{prob.mean():.3f}", f"{diff.mean():+.3f}"]
        for label, rank, prob, diff in zip(
            lens.labels, lens.answer_rank, lens.answer_prob, lens.logit_diff, strict=True
        )
    ]
    return f"<div><b>logit lens</b>{html_table(['after', 'answer rank', 'answer prob', 'logit diff'], rows)}</div>"
