"""The one colour convention for sign, shared by every figure: blue positive, red negative, white 0.

It is the convention of plotly's `RdBu` scale as TransformerLens's tutorials use it (not reversed):
heatmaps, bar charts, the logit lens's markers, the circuit graph's edges and the head explorer's grid
all colour a value by its own sign, as the value is shown in its hover text and in the tables. What a
sign means depends on the analysis (its unit says): in a denoising patching heatmap positive restores
the clean behaviour; in an ablation or a noising edge score, negative marks what the behaviour needs.
"""

from __future__ import annotations

from plotly.colors import diverging

POSITIVE = "#2166ac"  # RdBu's dark blue
NEGATIVE = "#b2182b"  # RdBu's dark red
# ColorBrewer's RdBu as [position, colour] stops, low (red) to high (blue): heatmaps use it centred on 0
# (zmid=0, zmin=-zmax) and the head explorer interpolates the same stops, so one value has one colour
DIVERGING: list[list] = [[i / (len(diverging.RdBu) - 1), c] for i, c in enumerate(diverging.RdBu)]
CONVENTION = "Colours: blue = positive, red = negative, white = 0, in every figure of this report."


def sign_colour(value: float) -> str:
    """The colour of one value's sign (0 counts as positive, as in the tables' `+0.0000`)."""
    return NEGATIVE if value < 0 else POSITIVE
