"""`interp demo`: the toy model's circuits, found by the workbench, written as an HTML report.

Loads the embedded toy model, measures its IOI behaviour, scores every head for
previous-token / induction / duplicate-token / first-token attention from one cached forward,
and writes a self-contained report. Runs offline in seconds.
"""

from __future__ import annotations

from pathlib import Path

from interp.console import say, table
from interp.heads import SCORE_KINDS, head_scores, top_heads
from interp.model import load_model
from interp.report import Report, Section
from interp.toy.behaviour import ioi_behaviour
from interp.viz.heatmaps import layer_head_heatmap

SCORE_EXPLANATIONS = {
    "previous_token": "Average attention from each token to the token just before it.",
    "induction": (
        "On a random sequence repeated twice: average attention from a token in the second copy "
        "to the token that followed its previous occurrence. Induction heads score near 1."
    ),
    "duplicate_token": "On the second copy: average attention to the previous occurrence of the same token.",
    "first_token": "Average attention parked on the first token of the prompt (an attention sink).",
}


def run_demo(out: Path, source: str = "toy") -> Path:
    model = load_model(source)
    info = model.interp_info
    say(
        f"loaded {info.source}: {info.n_layers} layers x {info.n_heads} heads, d_model {info.d_model}, {info.dtype} on {info.device}"
    )
    report = Report(
        title=f"interp demo: head scores and IOI behaviour of {info.source}",
        header={"model": info.source, "weights": info.weights, "dtype": info.dtype, "device": info.device},
    )
    if info.kind == "toy":
        behaviour = ioi_behaviour(model)
        rows = [
            [split, f"{m['accuracy']:.1%}", f"{m['mean_logit_diff']:.2f}"] for split, m in behaviour.items()
        ]
        say("IOI (logit of the indirect object minus logit of the subject, final position):")
        table([("split", "accuracy", "mean logit diff"), *map(tuple, rows)])
        report.add(
            Section(
                "IOI behaviour",
                "Accuracy: share of prompts where the indirect object's logit beats the subject's. "
                "Held-out splits use templates and/or names the model never saw in an IOI sentence.",
                table_header=["split", "accuracy", "mean logit diff"],
                table_rows=rows,
            )
        )
    scores = head_scores(model)
    for kind in SCORE_KINDS:
        best = top_heads(scores[kind], 3)
        say(f"top {kind} heads: " + ", ".join(f"L{layer}H{head} {value:.2f}" for layer, head, value in best))
        report.add(
            Section(
                f"{kind.replace('_', '-')} score",
                SCORE_EXPLANATIONS[kind],
                figures=[
                    layer_head_heatmap(scores[kind], f"{kind} score", value_label="score", diverging=False)
                ],
                table_header=["head", "score"],
                table_rows=[
                    [f"L{layer}H{head}", f"{value:.3f}"] for layer, head, value in top_heads(scores[kind], 5)
                ],
            )
        )
    path = report.write(out / "report.html")
    say(f"report: {path.resolve()}")
    return path
