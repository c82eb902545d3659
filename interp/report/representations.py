"""The report sections of `probe`, `sparse_probe` and `das`: accuracy along hooks (or probe sizes) with
the controls beside it, and a table with one row per hook (or size).

A probe's finding is the first hook where the held-out accuracy clears both its shuffled-label
control and chance (the best constant answer) by `READABLE_MARGIN`; DAS's the first hook where the
learned subspace's interchange accuracy clears the random subspace's by as much; a sparse probe's the
smallest k whose ROC AUC is within 0.02 of the best, beside its controls' (read by ROC AUC: with a rare
class, accuracy sits near the constant answer whatever the units carry).
"""

from __future__ import annotations

import torch

from interp.report.html import Section
from interp.viz.charts import accuracy_curves

KINDS = frozenset({"probe", "sparse_probe", "das"})
READABLE_MARGIN = 0.25


def _rows(entry: dict, values: torch.Tensor) -> list[list[str]]:
    points = entry["labels"][entry["dims"][0]]
    return [[point, *(f"{v:.3f}" for v in values[i].tolist())] for i, point in enumerate(points)]


def _first_clearing(
    entry: dict, values: torch.Tensor, method: int, control: int, floor: float = 0.0
) -> str | None:
    points = entry["labels"][entry["dims"][0]]
    for i, point in enumerate(points):
        if values[i, method] - max(float(values[i, control]), floor) >= READABLE_MARGIN:
            return point
    return None


def _probe_finding(entry: dict, values: torch.Tensor) -> str:
    first = _first_clearing(entry, values, 0, 1, entry.get("chance", 0.0))
    best = int(values[:, 0].argmax())
    best_at = entry["labels"]["hook"][best]
    where = f"readable from {first}" if first else "at no hook well above its control and chance"
    return (
        f"{len(entry.get('classes', []))} classes ({entry.get('labels_from', '')}): {where}; best "
        f"{values[best, 0]:.3f} at {best_at} (control {values[best, 1]:.3f}, chance {entry.get('chance', 0):.3f})"
    )


def _das_finding(entry: dict, values: torch.Tensor) -> str:
    first = _first_clearing(entry, values, 0, 2)
    best = int(values[:, 0].argmax())
    where = f"interchangeable from {first}" if first else "at no hook well above a random subspace"
    used = f"{entry.get('n_pairs_used')} of {entry.get('n_pairs')} pairs ({entry.get('n_tokens')} tokens)"
    return (
        f"{where}; best {values[best, 0]:.3f} at {entry['labels']['hook'][best]} (class means "
        f"{values[best, 1]:.3f}, random {values[best, 2]:.3f}); {used}"
    )


def _sparse_finding(entry: dict, values: torch.Tensor) -> str:
    auc = values[:, 0]
    best = float(auc.nan_to_num(-1).max())
    smallest = next(i for i, a in enumerate(auc.tolist()) if a >= best - 0.02)
    k = entry["labels"]["k"][smallest]
    units = entry.get("units", [])[: entry["ks"][smallest]] if "ks" in entry else []
    return (
        f"{entry.get('positive_class', '')!r} vs the rest at {entry.get('hook')}: ROC AUC {auc[smallest]:.3f} "
        f"with {k} (units {units}); random units {values[smallest, 1]:.3f}, shuffled labels "
        f"{values[smallest, 2]:.3f}; accuracy {values[smallest, 3]:.3f} (chance {entry.get('chance', 0):.3f})"
    )


def representation_section(entry: dict) -> Section:
    """The figure, the table and the finding of one `probe`, `sparse_probe` or `das` analysis."""
    values = torch.tensor(entry["values"], dtype=torch.float32)
    point_dim, measure_dim = entry["dims"]
    measures = entry["labels"][measure_dim]
    x_label = {"hook": "hook point", "k": "units probed"}[point_dim]
    if entry["kind"] == "sparse_probe":  # the ROC AUCs (chance 0.5); the accuracy is in the table
        figure = accuracy_curves(
            values[:, :3], entry["labels"][point_dim], measures[:3], f"{entry['name']}: held-out ROC AUC",
            x_label, 0.5, y_label="ROC AUC",
        )  # fmt: skip
    else:
        chance = entry.get("chance") if entry["kind"] == "probe" else None
        figure = accuracy_curves(
            values,
            entry["labels"][point_dim],
            measures,
            f"{entry['name']}: held-out accuracy",
            x_label,
            chance,
        )
    finding = {"probe": _probe_finding, "das": _das_finding, "sparse_probe": _sparse_finding}[entry["kind"]]
    explanation = f"{entry.get('explanation', '')} Values: {entry['description']}."
    if entry["kind"] == "das":
        explanation += (
            f" Trained on {entry.get('n_train')} pairs, scored on {entry.get('n_test')}; the subspaces are in "
            "results.json: interp.load_subspace(run_dir, name, hook) reads one, interp.das_steer makes it a Steer."
        )
    return Section(
        title=f"{entry['name']} ({entry['kind']})",
        explanation=explanation,
        figures=[figure],
        table_header=[point_dim, *measures],
        table_rows=_rows(entry, values),
        finding=finding(entry, values),
        unit="ROC AUC and accuracy, 0 to 1" if entry["kind"] == "sparse_probe" else "accuracy, 0 to 1",
    )
