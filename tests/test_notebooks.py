"""Every notebook runs end to end on the toy model with no error and no stderr output, and each
committed `.ipynb` (what JupyterLab opens on a double-click) is its jupytext `.py` twin, outputs stripped."""

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
        notebook, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert not errors
    stderr = [
        o.text
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "stream" and o.name == "stderr"
    ]
    assert not stderr, stderr  # warnings and progress bars to stderr are noise a reader has to skip
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
        "06_steering_and_generation",
        "07_dictionaries",
        "08_representations",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_is_paired_and_stripped(path):
    """`make notebooks` (jupytext --sync) keeps the pair equal; JupyterLab opens the .ipynb with the
    Python kernel chosen and nothing to save."""
    import jupytext
    import nbformat

    twin = path.with_suffix(".ipynb")
    assert twin.exists(), f"{twin.name} is missing: run `make notebooks`"
    ipynb = nbformat.read(twin, as_version=4)
    nbformat.validate(ipynb)  # cell ids present (nbformat 4.5), so JupyterLab adds none on open
    py = jupytext.read(path)
    cells = [(c.cell_type, c.source) for c in py.cells]
    assert [(c.cell_type, c.source) for c in ipynb.cells] == cells, (
        f"{path.name} and {twin.name} differ: run `make notebooks`"
    )
    assert ipynb.metadata["kernelspec"]["name"] == "python3"
    assert ipynb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    code = [c for c in ipynb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "outputs are not committed"
    assert twin.stat().st_size < 20_000
