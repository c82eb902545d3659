"""Analysis labels: they name directories in a run, so they are checked identifiers, never paths."""

from __future__ import annotations

import re

from interp.base.errors import RunDirectoryError

LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
LABEL_RULE = "1 to 64 characters: a letter, then letters, digits, '_' or '-'"


def label_problem(label: str) -> str | None:
    """Why `label` cannot name an analysis, or None if it can."""
    if not isinstance(label, str) or not LABEL.fullmatch(label):
        return f"{label!r} is not a valid analysis name ({LABEL_RULE})"
    return None


def check_label(label: str) -> str:
    """`label` itself, or a RunDirectoryError saying what a label may be (the baseline's is allowed)."""
    problem = None if label == BASELINE else label_problem(label)
    if problem:
        raise RunDirectoryError(problem)
    return label


BASELINE = "_baseline"  # the run's own clean/corrupted baseline units; user labels start with a letter
