"""The head explorer: one layer x head heatmap to click through, in notebooks and in reports alike.

Click a head: its attention pattern on the example prompt and its value in every analysis shown
(e.g. direct logit attribution, mean-ablation effect). Click a row of the pattern (a destination
token): the tokens it attends to most. All data travels with the view (nothing is computed on
click), so a saved notebook or a report file keeps working offline.

The renderer is one plain-DOM script (`explorer.js`, every data string set as text). In a notebook it
runs as an anywidget (the maintained widget route: its front end ships with the package, no comm
code of ours); in a report it is inlined once and called per explorer.
"""

from __future__ import annotations

import uuid

import torch
from jaxtyping import Float
from torch import Tensor

from interp.data.prompts import PromptPairs
from interp.data.tokens import str_tokens
from interp.model.loading import HookedPhi
from interp.viz.colours import DIVERGING
from interp.viz.embedded import EmbeddedView, script_source

NOT_DISPLAYED = (
    "Head explorer (an interactive widget): its view was not saved with this notebook. Run the cell in "
    "JupyterLab to display it."
)


def explorer_js() -> str:
    """The renderer's source, safe to inline in a <script> element."""
    return script_source("explorer.js")


def _grid(values: Tensor) -> list[list[float]]:
    return [[round(float(v), 6) for v in row] for row in values]


class HeadExplorer(EmbeddedView):
    """The data of one explorer; displays itself as a widget in notebooks and as HTML in reports."""

    SCRIPT, RENDER, ROOT_CLASS = "explorer.js", "interpExplorer", "interp-explorer-root"
    LABEL, NOT_DISPLAYED = "Head explorer", NOT_DISPLAYED

    def __init__(
        self,
        title: str,
        reading: str,
        grid_name: str,
        grid: Float[Tensor, "layer head"],
        columns: dict[str, Float[Tensor, "layer head"]],
        tokens: list[str],
        patterns: Float[Tensor, "layer head dest_pos src_pos"] | None,
    ):
        n_layers, n_heads = grid.shape
        for name, values in columns.items():
            if tuple(values.shape) != (n_layers, n_heads):
                raise ValueError(
                    f"column {name!r} is {tuple(values.shape)}, the grid is {(n_layers, n_heads)}"
                )
        if patterns is not None and tuple(patterns.shape[:2]) != (n_layers, n_heads):
            raise ValueError(f"patterns are {tuple(patterns.shape)}, the grid is {(n_layers, n_heads)}")
        start = divmod(int(grid.abs().flatten().argmax()), n_heads)
        self.data = {
            "title": title,
            "reading": reading,
            "n_layers": n_layers,
            "n_heads": n_heads,
            "grid": {"name": grid_name, "values": _grid(grid)},
            "columns": [{"name": name, "values": _grid(values)} for name, values in columns.items()],
            "tokens": list(tokens),
            "patterns": None
            if patterns is None
            else [
                [[[round(float(w), 4) for w in row] for row in head] for head in layer] for layer in patterns
            ],
            "colourscale": DIVERGING,  # the heatmaps' stops: one value, one colour in every figure
            "start": list(start),  # the head with the largest |value| is selected first
        }
        self.id = f"interp-explorer-{uuid.uuid4().hex[:12]}"


def head_explorer(
    model: HookedPhi,
    pairs: PromptPairs,
    grid: Float[Tensor, "layer head"] | None = None,
    grid_name: str = "direct logit attribution",
    *,
    ablation: str = "mean",
) -> HeadExplorer:
    """An explorer of every head on `pairs`: the heatmap is `grid` (e.g. `sweep(...).effect()`) or, by
    default, direct logit attribution; each head also shows its DLA and its ablation effect (metric
    change when it alone is ablated with `ablation`), and its attention on the first clean prompt."""
    from interp.methods.ablation import ablation_sweep
    from interp.methods.direct_logit_attribution import direct_logit_attribution
    from interp.model.cache import cache_activations

    dla = direct_logit_attribution(model, pairs).heads.mean(0)
    ablated = ablation_sweep(model, pairs, ablation).values.float()
    length = int(pairs.lengths[0])
    tokens = pairs.clean_tokens[:1, :length]
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    cache = cache_activations(model, tokens, names)
    patterns = torch.stack([cache[name][0].float().cpu() for name in names])
    columns = {"direct logit attribution": dla, f"{ablation} ablation: metric change": ablated}
    if grid is None:
        grid = columns.pop("direct logit attribution")
    return HeadExplorer(
        title=f"{grid_name}: click a head",
        reading=(
            f"Colour: {grid_name} (blue positive, red negative, white 0). The selected head's attention "
            "on the example prompt is on the right."
        ),
        grid_name=grid_name,
        grid=torch.as_tensor(grid).float().cpu(),
        columns=columns,
        tokens=str_tokens(model.tokenizer, tokens[0]),
        patterns=patterns,
    )
