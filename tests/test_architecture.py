"""The package's shape: layers that import only downwards, no import cycles, one glossary of dims.

Imports are read from the source with `ast` (also those inside functions), so a lazy import that
closes a cycle, or reaches up a layer, fails here rather than in a user's session.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "interp"

# each top-level entry's layer: an import may only go to the same layer or a lower one
LAYERS = {
    "base": 0,
    "model": 1,
    "engine": 2,
    "data": 3,
    "dictionaries": 3,
    "methods": 4,
    "viz": 5,
    "report": 6,
    "runner": 7,
    "toy": 8,
    "cli": 9,
    "__main__": 9,
    "__init__": 10,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every `interp` module this file imports, anywhere in it (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from interp.x import y` imports interp.x, and interp.x.y if that is a module
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, known) - {name} for name, path in mods.items()}


def layer_of(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return LAYERS[top]


def test_every_top_level_entry_has_a_layer_and_there_are_few():
    entries = sorted(
        p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"
    )
    assert set(entries) <= set(LAYERS), f"unplaced entries: {sorted(set(entries) - set(LAYERS))}"
    assert len(entries) <= 13, entries


def test_no_import_cycles():
    edges = graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    # a package's __init__ importing its own submodules is not a cycle between layers
    cycles = [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert not cycles, f"import cycles: {cycles}"


def test_the_cycle_detector_finds_a_planted_cycle(tmp_path, monkeypatch):
    """The detector itself: two modules importing each other inside functions are found."""
    package = tmp_path / "interp"
    (package / "base").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "base" / "__init__.py").write_text("")
    (package / "base" / "a.py").write_text("def f():\n    from interp.base.b import g\n")
    (package / "base" / "b.py").write_text("def g():\n    import interp.base.a\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", package)
    with pytest.raises(AssertionError, match="interp.base.a"):
        test_no_import_cycles()


def test_imports_go_downwards_only():
    upward = [
        f"{source} -> {target}"
        for source, targets in graph().items()
        for target in targets
        if layer_of(target) > layer_of(source)
    ]
    assert not upward, "imports that reach up a layer:\n" + "\n".join(sorted(upward))


def test_methods_are_one_file_each_named_after_the_method():
    names = {p.stem for p in (PACKAGE / "methods").glob("*.py")} - {"__init__"}
    for method in [
        "activation_patching",
        "path_patching",
        "attribution_patching",
        "ablation",
        "direct_logit_attribution",
        "logit_lens",
        "head_scores",
        "joint_patching",
    ]:
        assert method in names
    assert {"contrastive", "result"} <= names


JAXTYPING = re.compile(r"\b(?:Float|Int|Bool|Shaped)\[\s*Tensor\s*,\s*\"([^\"]*)\"\s*\]")


def test_every_shape_annotation_uses_the_glossary():
    from interp.base.dims import DIMS

    unknown = {}
    for path in PACKAGE.rglob("*.py"):
        for spec in JAXTYPING.findall(path.read_text()):
            for token in spec.split():
                # "_pos": jaxtyping's unchecked "pos" (list entries of several lengths)
                name = token.lstrip("*#_")
                if name in ("", "...") or name.isdigit():
                    continue
                if name not in DIMS:
                    unknown.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert not unknown, f"dimension names outside interp/base/dims.py: {unknown}"


def test_the_glossary_check_catches_an_unknown_name():
    from interp.base.dims import DIMS

    specs = JAXTYPING.findall('x: Float[Tensor, "batch q_pos d_model"]')
    assert specs == ["batch q_pos d_model"] and "q_pos" not in DIMS


def test_readme_layout_names_every_subpackage():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    layout = layout[: layout.index("\n## ", 4)]
    for entry in PACKAGE.iterdir():
        if entry.is_dir() and entry.name != "__pycache__":
            assert f"{entry.name}/" in layout, f"README's Layout section does not name interp/{entry.name}/"
            for module in entry.glob("*.py"):
                if module.stem != "__init__":
                    assert module.name in layout or module.stem in layout, f"README Layout misses {module}"
