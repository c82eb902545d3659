"""Build `report.html` for a run directory from its `results.json` (so `interp report` can redo it)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from interp.report import Report, Section
from interp.viz.charts import grouped_bars, logit_lens_chart, ranked_bars
from interp.viz.heatmaps import layer_head_heatmap, layer_pos_heatmap
from interp.viz.summary import top_coords

EXPLANATIONS = {
    "patch": (
        "Activation patching: each cell replaces one activation of the corrupted run with its value from the "
        "clean run (denoising) or the reverse (noising) and reports how much of the clean behaviour comes back. "
        "Cells near 1 carry what the task needs; near 0 they do not matter on their own."
    ),
    "path_patch": (
        "Path patching: the effect of each sender head on the output only through the chosen receivers "
        "(all other heads frozen). Large magnitude means the sender talks to the receivers."
    ),
    "attrib": (
        "Attribution patching: a gradient (first-order) estimate of the patching effect of every component from a "
        "single backward pass. Fast, but approximate: confirm its top components with exact patching."
    ),
    "dla": (
        "Direct logit attribution: how much each component writes, directly, into logit(answer) - logit(wrong) at "
        "the final position. Components that act through later layers can matter a lot and still score low here."
    ),
    "logit_lens": (
        "Logit lens: the residual stream after each layer decoded through the final LayerNorm and unembedding; "
        "where the curve rises is where the answer becomes readable."
    ),
    "ablate": (
        "Ablation: the metric change when one head's output is removed (negative = the head was helping). "
        "Unlike direct attribution this counts every path through which the head acts."
    ),
    "head_scores": "Attention-pattern score of each head on repeated random tokens (0 to 1).",
}


def _explanation(kind: str) -> str:
    for prefix, text in EXPLANATIONS.items():
        if kind.startswith(prefix):
            return text
    return ""


def _top_rows(values: torch.Tensor, dims: list[str], labels: dict, k: int) -> list[list[str]]:
    def name(dim: str, c: int) -> str:
        return (
            labels[dim][c]
            if dim in labels
            else {"layer": "L", "head": "H", "pos": " pos "}.get(dim, f"{dim} ") + str(c)
        )

    return [
        ["".join(name(d, c) for d, c in zip(dims, coords, strict=True)), f"{value:+.4f}"]
        for coords, value in top_coords(values, k)
    ]


def _figures(entry: dict, values: torch.Tensor, tokens: list[str]) -> list:
    dims, kind, title = entry["dims"], entry["kind"], entry["name"]
    if dims == ["layer", "head"]:
        diverging = kind != "head_scores"
        return [layer_head_heatmap(values, title, value_label="value", diverging=diverging)]
    if dims == ["layer", "pos"]:
        return [layer_pos_heatmap(values, tokens, title)]
    if dims == ["layer", "head", "pos"]:
        n_layers, n_heads, n_pos = values.shape
        rows = [f"L{layer}H{head}" for layer in range(n_layers) for head in range(n_heads)]
        return [layer_pos_heatmap(values.reshape(n_layers * n_heads, n_pos), tokens, title, row_labels=rows)]
    if dims == ["layer"]:
        return [logit_lens_chart(values, entry["labels"].get("layer", []), title, "logit difference")]
    if dims == ["layer", "component"]:
        return [grouped_bars(values, entry["labels"]["component"], title, "direct logit attribution")]
    return []


def build_report(results: dict) -> Report:
    model, task, baseline = results["model"], results["task"], results["baseline"]
    example = task["example"]
    report = Report(
        title=f"{task['name']} on {model['source']}",
        header={
            "model": f"{model['source']} ({model['n_layers']} layers x {model['n_heads']} heads, d_model {model['d_model']})",
            "weights / dtype / device": f"{model['weights']} / {model['dtype']} / {model['device']}",
            "task": f"{task['name']}, {task['n_pairs']} prompt pairs",
            "example clean prompt": "".join(example["clean_tokens"]) + f" -> {example['answer']!r}",
            "example corrupted prompt": "".join(example["corrupted_tokens"]) + f" -> {example['wrong']!r}",
            "metric": f"{baseline['metric']}: clean {baseline['clean']:.4f}, corrupted {baseline['corrupted']:.4f}",
            "config hash": results.get("config_hash", ""),
        },
    )
    attention = results.get("attention_example") or {}
    if attention.get("heads"):
        from interp.viz.attention import AttentionPatterns

        patterns = torch.tensor([h["pattern"] for h in attention["heads"]])
        names = [f"L{h['layer']}H{h['head']}" for h in attention["heads"]]
        report.add(
            Section(
                title="Attention patterns of the top heads",
                explanation=(
                    f"Attention of the heads that {attention['ranked_by']} ranks highest, on the example clean "
                    "prompt: each row is a destination token, each column a source token it attends to. Hover a "
                    "cell for the tokens and the weight; select a head to enlarge it."
                ),
                widgets=[AttentionPatterns(patterns, attention["tokens"], names)],
            )
        )
    for entry in results["analyses"]:
        values = torch.tensor(entry["values"], dtype=torch.float32)
        figures = _figures(entry, values, example["clean_tokens"])
        rows = _top_rows(values, entry["dims"], entry.get("labels", {}), entry.get("top_k", 10))
        if entry["kind"] == "ablate_head" and rows:
            figures.append(
                ranked_bars(
                    [r[0] for r in rows],
                    [float(r[1]) for r in rows],
                    f"{entry['name']}: largest changes",
                    "change",
                )
            )
        report.add(
            Section(
                title=f"{entry['name']} ({entry['kind']})",
                explanation=f"{_explanation(entry['kind'])} Values: {entry['description']}.",
                figures=figures,
                table_header=["component", "value"],
                table_rows=rows,
            )
        )
    return report


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    results_file = run_dir / "results.json"
    if not results_file.is_file():
        raise FileNotFoundError(
            f"{run_dir} has no results.json; run `interp run CONFIG --out {run_dir}` first"
        )
    return build_report(json.loads(results_file.read_text())).write(run_dir / "report.html")
