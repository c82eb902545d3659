"""Attention patterns with circuitsvis, offline and safe.

circuitsvis 1.43's own HTML imports its JavaScript from unpkg (blank offline), calls
`urlopen("http://google.com")` on every notebook render, inserts tokens as raw HTML (so a token
`<img src=x onerror=...>` becomes markup), does not escape props for `</script>`, and leaves its
`<div/>` unclosed so that concatenated widgets nest. Here:

- the package's own bundle (`circuitsvis/dist/cdn/iife.js`) is inlined, once per page;
- we use the `AttentionHeads` component, which draws tokens as text on a canvas (checked in a
  browser: an escaped token shows its entities literally, so it is not parsed as HTML) rather than
  the components that set tokens as `innerHTML`; beside it we list the tokens ourselves, escaped,
  so a reader sees exactly which strings (spaces included) the model saw;
- props are JSON with `<`, `>` and `&` written as unicode escapes, so nothing closes the script;
- each widget renders into its own closed `<div>`; nothing touches the network;
- in a notebook the bundle (1.3 MB) ships with the first widget a kernel displays, not with every
  one; until a widget's script runs, its container says why it is empty and what to do (an untrusted
  notebook, executed elsewhere, does not run scripts; a page whose bundle-carrying output is gone).
"""

from __future__ import annotations

import html
import uuid
from functools import lru_cache
from pathlib import Path

from jaxtyping import Float
from torch import Tensor

from interp.base.html import script_json
from interp.data.tokens import str_tokens
from interp.model.loading import HookedPhi

NEEDS_SCRIPTS = (
    "Attention viewer: its JavaScript has not run here. In JupyterLab, run this cell again or trust the "
    "notebook (command palette: Trust Notebook); for a report, open the file in a web browser."
)
NO_BUNDLE = (
    "Attention viewer: the viewer's code came with an earlier output that is no longer on this page; "
    "run this cell again."
)
_shipped = {"bundle": False}  # whether this kernel has already sent the bundle to the notebook


@lru_cache(maxsize=1)
def circuitsvis_bundle() -> str:
    """circuitsvis's bundled JavaScript, safe to inline in a <script> element."""
    import circuitsvis

    source = (Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js").read_text(encoding="utf-8")
    # its only "</script" sits in a string literal; "<\/script" is the same string and cannot end our tag
    return source.replace("</script", "<\\/script")


class AttentionPatterns:
    """Every head's attention pattern for one prompt; displays itself in JupyterLab and reports."""

    def __init__(
        self,
        patterns: Float[Tensor, "head dest_pos src_pos"],
        tokens: list[str],
        head_names: list[str] | None = None,
    ):
        if patterns.shape[-1] != len(tokens) or patterns.shape[-2] != len(tokens):
            raise ValueError(f"patterns are {tuple(patterns.shape)} but there are {len(tokens)} tokens")
        self.patterns = patterns.detach().float().cpu()
        self.tokens = list(tokens)
        self.head_names = head_names or [f"H{h}" for h in range(self.patterns.shape[0])]
        self.id = f"interp-attn-{uuid.uuid4().hex[:12]}"

    def props(self) -> dict:
        return {
            "attention": self.patterns.tolist(),
            "tokens": self.tokens,  # AttentionHeads draws these on a canvas, as text
            "attentionHeadNames": self.head_names,
            "maskUpperTri": True,
        }

    def html(self, include_bundle: bool = True) -> str:
        """A closed container and the script that renders into it (plus the bundle, if asked)."""
        bundle = f"<script>{circuitsvis_bundle()}</script>" if include_bundle else ""
        listed = " ".join(
            f"<span class='interp-token'>[{i}] <code>{html.escape(repr(t))}</code></span>"
            for i, t in enumerate(self.tokens)
        )
        return (
            f"{bundle}<div class='interp-attention-block'><div id='{self.id}' class='interp-attention' style='max-width: 720px'>"
            f"<p class='interp-needs-js'>{html.escape(NEEDS_SCRIPTS)}</p></div>"
            f"<div class='interp-tokens'>tokens: {listed}</div></div>"
            f"<script>(() => {{ const el = document.getElementById({script_json(self.id)}); el.replaceChildren();"
            f" if (typeof CircuitsVis === 'undefined') {{ el.textContent = {script_json(NO_BUNDLE)}; return; }}"
            f" CircuitsVis.render({script_json(self.id)}, CircuitsVis.AttentionHeads, "
            f"{script_json(self.props())}); }})();</script>"
        )

    def _repr_html_(self) -> str:
        # a notebook's outputs share one page: the bundle goes with the first widget this kernel shows
        if _shipped["bundle"]:
            return self.html(include_bundle=False)
        _shipped["bundle"] = True
        guarded = f"<script>if (typeof CircuitsVis === 'undefined') {{ {circuitsvis_bundle()} }}</script>"
        return guarded + self.html(include_bundle=False)


def attention_patterns(
    model: HookedPhi, text_or_tokens, layer: int, *, head_names: list[str] | None = None
) -> AttentionPatterns:
    """The attention patterns of every head of `layer` on one prompt."""
    import torch

    from interp.model.cache import cache_activations

    if isinstance(text_or_tokens, str):
        tokens = model.tokenizer(text_or_tokens, add_special_tokens=False, return_tensors="pt")["input_ids"]
    else:
        tokens = torch.as_tensor(text_or_tokens).reshape(1, -1)
    cache = cache_activations(model, tokens, [f"blocks.{layer}.attn.hook_pattern"])
    labels = str_tokens(model.tokenizer, tokens[0])
    names = head_names or [f"L{layer}H{h}" for h in range(model.cfg.n_heads)]
    return AttentionPatterns(cache[f"blocks.{layer}.attn.hook_pattern"][0], labels, names)
