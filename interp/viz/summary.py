"""Small HTML summaries that results objects show in notebooks (`_repr_html_`); all text escaped."""

from __future__ import annotations

import html

import torch


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def top_cells(values: torch.Tensor, dims: tuple[str, ...], k: int = 5) -> list[list[str]]:
    flat = values.flatten()
    rows = []
    for index in flat.abs().argsort(descending=True)[:k].tolist():
        coords, rest = [], index
        for size in reversed(values.shape):
            coords.append(rest % size)
            rest //= size
        label = " ".join(f"{d}={c}" for d, c in zip(dims, reversed(coords), strict=True))
        rows.append([label, f"{flat[index].item():+.4f}"])
    return rows


def patch_result_html(result) -> str:
    values = result.values.mean(-1) if result.per_prompt else result.values
    title = (
        f"<b>{html.escape(result.site)}</b> ({html.escape(result.direction)}, {html.escape(result.metric)})"
    )
    facts = f"dims {html.escape(' x '.join(result.dims) or 'scalar')} {tuple(values.shape)}; clean {result.clean:.4f}, corrupted {result.corrupted:.4f}"
    return (
        f"<div>{title}<br>{facts}{_table(['largest |value|', 'value'], top_cells(values, result.dims))}</div>"
    )


def dla_html(dla) -> str:
    heads = dla.heads.mean(-1)
    rows = top_cells(heads, ("layer", "head"))
    facts = (
        f"logit difference {dla.logit_diff.mean():.4f} (mean over {dla.logit_diff.numel()} prompts); "
        f"max |components + constants - logit diff| {(dla.total() - dla.logit_diff).abs().max():.1e}"
    )
    return f"<div><b>direct logit attribution</b><br>{html.escape(facts)}{_table(['head', 'mean DLA'], rows)}</div>"


def logit_lens_html(lens) -> str:
    rows = [
        [label, f"{rank.float().mean():.1f}", f"{prob.mean():.3f}", f"{diff.mean():+.3f}"]
        for label, rank, prob, diff in zip(
            lens.labels, lens.answer_rank, lens.answer_prob, lens.logit_diff, strict=True
        )
    ]
    return (
        f"<div><b>logit lens</b>{_table(['after', 'answer rank', 'answer prob', 'logit diff'], rows)}</div>"
    )
