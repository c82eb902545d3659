"""Static PNG/SVG/PDF export of figures through kaleido, using the system's Chromium.

kaleido 1.x drives a Chrome/Chromium it finds on the machine (`BROWSER_PATH`); its own Chrome
download is not possible offline. `save_figure` points it at Debian's Chromium when `BROWSER_PATH`
is unset, and says what to install when no browser is present.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import plotly.graph_objects as go

from interp.base.errors import InputError, InterpError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class NoBrowserError(InterpError, RuntimeError):
    """Static export needs a Chrome or Chromium on the machine."""


def find_browser() -> str | None:
    """The system Chromium kaleido can drive (BROWSER_PATH first), or None."""
    configured = os.environ.get("BROWSER_PATH")
    if configured and Path(configured).exists():
        return configured
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def save_figure(figure: go.Figure, path: str | Path, *, scale: float = 2.0) -> Path:
    """Write `figure` as PNG, SVG or PDF (by the file's suffix)."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".webp"):
        raise InputError(f"{path.name}: use a .png, .svg, .pdf, .jpg or .webp file name")
    browser = find_browser()
    if browser is None:
        raise NoBrowserError(
            "Static image export needs Chrome or Chromium, and none was found (set BROWSER_PATH, or install "
            "one: `apt-get install chromium` on Debian/Ubuntu). kaleido's own Chrome download does not work "
            "offline. Interactive figures and HTML reports need no browser."
        )
    os.environ.setdefault("BROWSER_PATH", browser)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.write_image(str(path), scale=scale)
    return path
