"""Every notebook runs end to end on the toy model (a failing cell fails the test)."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9]*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path):
    import jupytext
    from nbclient import NotebookClient

    notebook = jupytext.read(path)
    assert notebook.cells[1].source.startswith("MODEL = "), "first code cell must hold the parameters"
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert not errors
    assert any(
        "application/vnd.plotly.v1+json" in o.get("data", {}) or "text/html" in o.get("data", {})
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )


def test_notebooks_are_present():
    assert [p.stem for p in NOTEBOOKS] == [
        "01_quickstart",
        "02_activation_patching",
        "03_head_attribution",
        "04_ablation_sweeps",
        "05_circuit_discovery",
    ]
