"""The one place where `interp` writes to the terminal (CLI output and progress lines)."""

from __future__ import annotations

import sys


def say(message: str = "") -> None:
    """Print one line of CLI output (the only place `interp` prints)."""
    print(message, flush=True)


def warn(message: str, prefix: str = "warning") -> None:
    """Print `warning: message` (or `error: message`) to stderr."""
    print(f"{prefix}: {message}", file=sys.stderr, flush=True)


def table(rows: list[tuple[str, ...]], indent: int = 2) -> None:
    """Left-aligned columns."""
    if not rows:
        return
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        say(
            " " * indent
            + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
