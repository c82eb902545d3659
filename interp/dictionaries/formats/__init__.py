"""File layouts of other tools, both ways: SAELens's (`saelens.py`) and eai-sparsify's (`sparsify.py`)."""

from __future__ import annotations

import json
from pathlib import Path

from interp.base.errors import InputError
from interp.base.files import read_regular

CFG = "cfg.json"
MAX_CFG_BYTES = 1 << 20  # a dictionary's cfg.json is a few hundred bytes


def read_cfg(directory: Path) -> dict:
    """The `cfg.json` of a dictionary directory, read as a regular file of at most 1 MiB holding an object."""
    path = directory / CFG
    try:
        cfg = json.loads(read_regular(path, MAX_CFG_BYTES, "dictionary config"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path} is not valid JSON: {error}.") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{path} holds a JSON {type(cfg).__name__}; a dictionary config is a JSON object.")
    return cfg
