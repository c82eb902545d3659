"""Files the `feature_cards` kind reads in tests: two saved toy dictionaries and two corpus files."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path


@functools.cache
def feature_cards_files() -> dict[str, str]:
    """Paths (made once per test session): `sae_a`, `sae_b` (TopK SAEs on the toy's blocks.1.hook_resid_pre,
    8 latents, different seeds), `text_a` (.txt) and `text_b` (.jsonl)."""
    from interp.dictionaries import make_dictionary, save_dictionary

    root = Path(tempfile.mkdtemp(prefix="interp-feature-cards-"))
    paths = {}
    for name, seed in (("sae_a", 1), ("sae_b", 2)):
        sae = make_dictionary("topk", d_in=160, d_sae=8, k=2, hook_name="blocks.1.hook_resid_pre", seed=seed)
        paths[name] = str(save_dictionary(sae, root / name))
    paths["text_a"] = str(root / "a.txt")
    Path(paths["text_a"]).write_text(
        "When Mary and John went to the store, John gave a drink to Mary\n\n"
        "Then, Adam went to the park, and Adam was happy\nThe cat sat on the red box\n",
        encoding="utf-8",
    )
    paths["text_b"] = str(root / "b.jsonl")
    rows = [
        "Later, Kate walked to the school, and then Kate found a ball",
        "When Tom and Anna went to the beach",
    ]
    Path(paths["text_b"]).write_text("".join(json.dumps({"text": r}) + "\n" for r in rows), encoding="utf-8")
    return paths
