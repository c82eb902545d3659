"""Build `report.html` for a run directory from its `results.json` (so `interp report` can redo it)."""

from __future__ import annotations

import itertools
from pathlib import Path

import einops
import torch

from interp.base.errors import FileKindError, InterpError
from interp.base.files import read_json
from interp.methods.result import component_name, top_coords
from interp.report.dictionaries import KINDS as DICTIONARY_KINDS
from interp.report.dictionaries import dictionary_section
from interp.report.features import feature_cards_section
from interp.report.html import Report, Section
from interp.report.representations import KINDS as REPRESENTATION_KINDS
from interp.report.representations import representation_section
from interp.viz.charts import grouped_bars, logit_lens_chart, ranked_bars
from interp.viz.circuit import circuit_graph, faithfulness_chart
from interp.viz.colours import CONVENTION
from interp.viz.heatmaps import layer_head_heatmap, layer_pos_heatmap

# results.json of a Phi-2 edge run (a score per edge, a few million edges) stays well below this
MAX_RESULTS_BYTES = 1 << 30


class ReportError(InterpError, ValueError):
    """A run directory whose results cannot be rendered; the message says what is wrong with it."""


# What one value of each kind is measured in, and on which scale: "gap" values are already fractions of
# the clean - corrupted gap; "metric" values are in the task metric's units and "logits" in logit
# differences, which the summary also shows as a fraction of the gap (for "logits" only when the metric
# is the logit difference itself); None: a scale of its own. `{metric}` is the run's metric.
UNITS: dict[str, tuple[str, str | None]] = {
    **{
        kind: ("normalised metric: 1 = the clean value, 0 = the corrupted one", "gap")
        for kind in (
            "patch_resid_pre", "patch_attn_out", "patch_mlp_out", "patch_head_out", "patch_head_out_by_pos",
            "patch_head_q", "patch_head_k", "patch_head_v", "patch_head_pattern", "path_patch",
        )
    },
    "attrib_head_out": ("estimated effect as a fraction of the clean - corrupted gap", "gap"),
    "attrib_resid_pre": ("estimated effect as a fraction of the clean - corrupted gap", "gap"),
    "dla_head": ("logits: direct contribution to logit(answer) - logit(wrong)", "logits"),
    "dla_layer": ("logits: direct contribution to logit(answer) - logit(wrong)", "logits"),
    "logit_lens": ("logits: logit(answer) - logit(wrong)", "logits"),
    "ablate_head": ("{metric} change, ablated - clean", "metric"),
    "head_scores": ("attention score, 0 to 1", None),
    "edge_patch": ("{metric} change, patched - unpatched", "metric"),
    "eap": ("estimated {metric} change, patched - unpatched", "metric"),
    "eap_ig": ("estimated {metric} change, patched - unpatched", "metric"),
    "circuit_faithfulness": ("faithfulness, 1 = the full model, 0 = the empty circuit; CPR, CMD: areas", None),
    "steer": ("{metric} of the steered corrupted prompts", None),
    "generate": ("1 = the text changed with the intervention", None),
    "feature_attribution": ("estimated {metric} change, patched - unpatched", "metric"),
    "dictionary_eval": ("each metric's own: L0 in latents, fractions, CE in nats", None),
    "feature_cards": ("density: fraction of corpus tokens a latent is active on", None),
    "attribution_graph": ("influence on the graph's top logits, over every path", None),
    "feature_circuit": ("estimated {metric} change, patched - unpatched", "metric"),
    "probe": ("held-out accuracy, 0 to 1", None),
    "sparse_probe": ("held-out accuracy, 0 to 1", None),
    "das": ("held-out interchange accuracy, 0 to 1", None),
}  # fmt: skip


def unit_of(entry: dict, metric: str) -> tuple[str, str | None]:
    """An analysis's unit (its own `unit` field if results.json has one, else the kind's) and its scale."""
    unit, scale = UNITS.get(entry["kind"], ("see the section's values", None))
    unit = entry.get("unit", unit)
    return unit.format(metric=metric), (scale if scale != "logits" or metric == "logit_diff" else None)


def _top_rows(entry: dict, values: torch.Tensor) -> list[list[str]]:
    """The analysis's top-k components ranked by distance from its no-effect value (as EffectResult.top)."""
    dims, labels = entry["dims"], dict(entry.get("labels", {}))
    if "edges" in entry:
        labels["edge"] = entry["edges"]
    no_effect = entry.get("no_effect", 0.0)
    if no_effect is None:  # a curve (logit lens, faithfulness): every point in order
        ranked = [(coords, values[coords].item()) for coords in itertools.product(*map(range, values.shape))]
    else:
        ranked = top_coords(values, entry.get("top_k", 10), centre=no_effect)
    return [[component_name(dims, coords, labels), f"{value:+.4f}"] for coords, value in ranked]


def _finding(entry: dict, rows: list[list[str]], scale: str | None, gap: float) -> str:
    """One line for the summary: the top three components by effect (a curve's CPR/CMD, if it has them);
    values in metric units or logits also as a fraction of the clean - corrupted `gap`."""
    if entry.get("no_effect", 0.0) is None:
        scores = [
            f"{k.upper()} {entry[k]:.3f}" for k in ("cpr", "cmd") if isinstance(entry.get(k), int | float)
        ]
        return ", ".join(scores) or "a curve: see its figure"
    if scale in ("metric", "logits") and gap:
        return ", ".join(
            f"{name} ({value} = {float(value) / gap:+.2f} of the gap)" for name, value in rows[:3]
        )
    return ", ".join(f"{name} ({value})" for name, value in rows[:3])


def _figures(
    entry: dict, values: torch.Tensor, tokens: list[str], rows: list[list[str]], model: dict
) -> list:
    dims, title = entry["dims"], entry["name"]
    figures = []
    for name in entry.get("figures") or ["heatmap"]:
        if name in ("heatmap", "scores_heatmap") and dims == ["layer", "head"]:
            figures.append(
                layer_head_heatmap(values, title, value_label="value", diverging=name == "heatmap")
            )
        elif name == "heatmap" and dims == ["layer", "pos"]:
            figures.append(layer_pos_heatmap(values, tokens, title))
        elif name == "heatmap" and dims == ["layer", "head", "pos"]:
            n_layers, n_heads, n_pos = values.shape
            row_labels = [f"L{layer}H{head}" for layer in range(n_layers) for head in range(n_heads)]
            flat = einops.rearrange(values, "layer head pos -> (layer head) pos")
            figures.append(layer_pos_heatmap(flat, tokens, title, row_labels=row_labels))
        elif name == "lens" and dims == ["layer"]:
            figures.append(
                logit_lens_chart(values, entry["labels"].get("layer", []), title, "logit difference")
            )
        elif name == "grouped_bars" and dims == ["layer", "component"]:
            figures.append(
                grouped_bars(values, entry["labels"]["component"], title, "direct logit attribution")
            )
        elif name == "circuit_graph" and dims == ["edge"] and "edges" in entry:
            figures.append(
                circuit_graph(entry["edges"], values, model["n_layers"], model["n_heads"], title)
            )  # coloured by the sign of the stored score, as its table lists it
        elif name == "faithfulness_curve" and dims == ["ranking", "fraction"]:
            curves = dict(zip(entry["labels"]["ranking"], values.tolist(), strict=True))
            figures.append(faithfulness_chart(entry.get("fractions", []), curves, title))
        elif name == "steer_heatmap" and dims == ["layer", "multiplier"]:
            labels = entry.get("labels", {})
            figures.append(
                layer_pos_heatmap(
                    values, labels.get("multiplier", []), f"{title}: metric of the steered corrupted prompts",
                    row_labels=labels.get("layer"),
                )
            )  # fmt: skip
        elif name == "ranked_bars" and rows:
            names, numbers = [r[0] for r in rows], [float(r[1]) for r in rows]
            figures.append(ranked_bars(names, numbers, f"{title}: largest changes", "change"))
    return figures


def _shortened(text: str, limit: int = 240) -> str:
    """`text`, or its start and end around an ellipsis when longer than `limit` (the summary stays short;
    the run details keep the whole string)."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 60]}…{text[-40:]} ({len(text)} characters; in full under Run details)"


def build_report(results: dict) -> Report:
    """The report of a run from its results.json contents: a header, then one section per analysis."""
    model, task, baseline = results["model"], results["task"], results["baseline"]
    example = task["example"]
    gap_text = f"{baseline['clean'] - baseline['corrupted']:.4f}"
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
        lead=[
            f"Metric {baseline['metric']}: clean {baseline['clean']:.4f}, corrupted {baseline['corrupted']:.4f} "
            f"(mean over {task['n_pairs']} prompt pairs of {task['name']}; example: "
            f"{_shortened(''.join(example['clean_tokens']))!r} -> {_shortened(example['answer'])!r}). Each "
            "analysis below says which "
            "components carry that difference; the largest changes are listed here, each line in its own "
            f"unit (in brackets). The gap, clean - corrupted, is {gap_text}: lines in {baseline['metric']} "
            "units or logits also give each value as a fraction of it, the scale patching uses.",
            CONVENTION,
        ],
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
    explorer = _explorer(results)
    if explorer is not None:
        report.add(
            Section(
                title="Head explorer",
                explanation=(
                    "Every head of the model in one grid, coloured by the first per-head analysis; click a head "
                    "for its attention pattern on the example clean prompt and its value in every per-head "
                    "analysis of this run, and a row of the pattern for where that token attends."
                ),
                widgets=[explorer],
            )
        )
    gap = baseline["clean"] - baseline["corrupted"]
    for entry in results["analyses"]:
        if entry["kind"] in DICTIONARY_KINDS:  # sections of their own (tables, the feature browser)
            report.add(dictionary_section(entry))
            continue
        if entry["kind"] == "feature_cards":
            report.add(feature_cards_section(entry))
            continue
        if entry["kind"] in REPRESENTATION_KINDS:
            report.add(representation_section(entry))
            continue
        values = torch.tensor(entry["values"], dtype=torch.float32)
        rows = _top_rows(entry, values)
        unit, scale = unit_of(entry, baseline["metric"])
        report.add(
            Section(
                title=f"{entry['name']} ({entry['kind']})",
                explanation=f"{entry.get('explanation', '')} Values: {entry['description']}.".strip(),
                figures=_figures(entry, values, example["clean_tokens"], rows, model),
                table_header=["component", f"value ({unit})"],
                table_rows=rows,
                finding=_finding(entry, rows, scale, gap),
                unit=unit,
            )
        )
        if entry.get("samples"):
            report.add(_samples_section(entry))
        if entry["kind"] == "attribution_graph":
            from interp.report.graphs import graph_sections

            for section in graph_sections(entry):
                report.add(section)
        if entry["kind"] == "feature_circuit":
            from interp.report.feature_circuits import feature_circuit_sections

            for section in feature_circuit_sections(entry):
                report.add(section)
    return report


def _samples_section(entry: dict) -> Section:
    """Generated text side by side: each prompt's text without the intervention, then with each one."""
    samples = entry["samples"]
    plain = {s["prompt"]: s["text"] for s in samples if s["layer"] is None}
    rows = [
        [s["prompt"], str(s["layer"]), f"{s['multiplier']:g}", plain.get(s["prompt"], ""), s["text"]]
        for s in samples
        if s["layer"] is not None
    ]
    return Section(
        title=f"{entry['name']}: generated text",
        explanation="Greedy continuations of the same prompts, without the intervention and with it.",
        table_header=["prompt", "layer / intervention", "multiplier", "without", "with"],
        table_rows=rows,
    )


def _explorer(results: dict):
    """The head explorer of a run: its per-head analyses and, if stored, every head's pattern."""
    from interp.viz.explorer import HeadExplorer

    grids = [entry for entry in results["analyses"] if entry["dims"] == ["layer", "head"]]
    attention = results.get("attention_example") or {}
    if not grids or "all" not in attention:
        return None

    def values(entry: dict) -> torch.Tensor:
        return torch.tensor(entry["values"], dtype=torch.float32)

    first = grids[0]
    return HeadExplorer(
        title=f"{first['name']}: click a head",
        reading=(
            f"Colour: {first['name']} ({first['kind']}; blue positive, red negative, white 0). The selected "
            "head's attention on the example prompt is on the right."
        ),
        grid_name=first["name"],
        grid=values(first),
        columns={entry["name"]: values(entry) for entry in grids[1:]},
        tokens=attention["tokens"],
        patterns=torch.tensor(attention["all"]),
    )


def write_report(run_dir: str | Path) -> Path:
    """Write `RUN_DIR/report.html` from `RUN_DIR/results.json`; a ReportError says what is wrong."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir} is not a directory; give a run directory written by `interp run`.")
    results_file = run_dir / "results.json"
    if not results_file.exists():  # a directory or FIFO there is refused, by name, by read_json
        raise ReportError(f"{run_dir} has no results.json; run `interp run CONFIG --out {run_dir}` first.")
    try:
        results = read_json(results_file, MAX_RESULTS_BYTES, "results file")
    except FileKindError as error:
        raise ReportError(
            f"{error} It is damaged: rerun `interp run CONFIG --out {run_dir} --resume`, which rewrites it "
            "from the finished units."
        ) from None
    missing = [
        key
        for key in ("model", "task", "baseline", "analyses")
        if not isinstance(results, dict) or key not in results
    ]
    if missing:
        raise ReportError(f"{results_file} is not an interp results file (missing {', '.join(missing)}).")
    try:
        report = build_report(results)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise ReportError(
            f"{results_file} does not have the layout this version of interp writes "
            f"({type(error).__name__}: {error}); rerun the experiment to regenerate it."
        ) from None
    return report.write(run_dir / "report.html")
