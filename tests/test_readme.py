"""Every python block of README.md and notebooks/README.md runs as written, on the toy model.

Blocks of one file run in order in one namespace, so a block that continues the previous one (uses its
`model`, `pairs`, ...) finds them. The only change made to a block: a `load_model(...)` that names a hub
model or a local path loads `"toy"` instead (no download, no directory that exists elsewhere only).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "notebooks" / "README.md"]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
HUB_OR_PATH = re.compile(r"""load_model\((["'])(?!toy\1)[^"']+\1""")

# blocks being mended on other branches: (file, first line of the block) -> (why it fails today, the error)
EXPECTED_TO_FAIL = {
    ("README.md", "from interp import AblateHeads, Hook, PatchFrom, generate, steering_vector"): (
        "the generation block uses `corrupted_tokens`, which no block defines",
        NameError,
    ),
}


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """(line number, source) of each ```python fenced block, in order."""
    text = path.read_text()
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in FENCE.finditer(text)]


def on_the_toy(source: str) -> str:
    return HUB_OR_PATH.sub('load_model("toy"', source)


def test_substitution_touches_only_hub_models_and_paths():
    source = 'a = load_model("toy")\nb = load_model("microsoft/phi-2")\nc = load_model("/data/phi-2", weights="folded")'
    assert (
        on_the_toy(source)
        == 'a = load_model("toy")\nb = load_model("toy")\nc = load_model("toy", weights="folded")'
    )


def test_the_readmes_have_python_blocks():
    assert len(python_blocks(DOCS[0])) >= 4  # a broken fence pattern would make every test below vacuous


CASES = [
    pytest.param(
        doc,
        index,
        line,
        marks=[
            pytest.mark.xfail(reason=EXPECTED_TO_FAIL[key][0], raises=EXPECTED_TO_FAIL[key][1], strict=True)
        ]
        if (key := (doc.name, source.splitlines()[0])) in EXPECTED_TO_FAIL
        else [],
        id=f"{doc.relative_to(ROOT)}:{line}",
    )
    for doc in DOCS
    for index, (line, source) in enumerate(python_blocks(doc))
]


@pytest.fixture(scope="module")
def namespaces():
    """Per document: the namespace its blocks share and, for each block run so far, its error (or None)."""
    return {}


def _run_document(doc: Path, upto: int, namespaces: dict, workdir: Path) -> None:
    """Run the blocks of `doc` up to index `upto` that have not run yet, in order, in one namespace."""
    state = namespaces.setdefault(doc, {"globals": {"__name__": "__readme__"}, "done": {}})
    for index, (line, source) in enumerate(python_blocks(doc)[: upto + 1]):
        if index in state["done"]:
            continue
        cwd = os.getcwd()
        os.chdir(workdir)  # blocks that write files (save_circuit) write them here
        try:
            exec(compile(on_the_toy(source), f"{doc.name}:{line}", "exec"), state["globals"])
            state["done"][index] = None
        except Exception as error:  # kept for this block's test; later blocks still run
            state["done"][index] = error
        finally:
            os.chdir(cwd)


@pytest.mark.parametrize(("doc", "index", "line"), CASES)
def test_block_runs_as_written(doc, index, line, namespaces, tmp_path):
    _run_document(doc, index, namespaces, tmp_path)
    error = namespaces[doc]["done"][index]
    if error is not None:
        raise error
