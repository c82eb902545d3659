"""The feature browser: many feature cards in one view, in notebooks and in reports alike.

A list of latents (search by token: a context's tokens, promoted / suppressed or input tokens; sort by
density, max activation or index) beside the selected latent's card: density, max and mean
activation, the histogram of its activations, its top contexts with every token's activation as the
background (hover for the value; the largest is outlined), the tokens it promotes and suppresses and,
for a transcoder, the tokens and earlier latents that drive it, and the tokens that drive it through
earlier attention heads (their OV circuits). One card alone is a browser of one.

As the head explorer (`explorer.py`), the renderer is one plain-DOM script (`features.js`, every data
string set as text, never parsed as markup) run as an anywidget in a notebook and inlined once in a
report (`bundle_js`), with all data in the page: it works offline, saved or not.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from interp.dictionaries.cards import FeatureCard
from interp.viz.embedded import EmbeddedView, script_source

NOT_DISPLAYED = (
    "Feature browser (an interactive widget): its view was not saved with this notebook. Run the cell in "
    "JupyterLab to display it."
)
SORTS = ("density", "max_act", "feature")


def features_js() -> str:
    """The renderer's source, safe to inline in a <script> element."""
    return script_source("features.js")


class FeatureBrowser(EmbeddedView):
    """The data of one browser; displays itself as a widget in notebooks and as HTML in reports."""

    SCRIPT, RENDER, ROOT_CLASS = "features.js", "interpFeatures", "interp-features-root"
    LABEL, NOT_DISPLAYED = "Feature browser", NOT_DISPLAYED

    def __init__(self, cards: Sequence[FeatureCard], title: str = "features", *, sort: str = "density"):
        if sort not in SORTS:
            raise ValueError(f"sort={sort!r} is not allowed; use one of {', '.join(SORTS)}")
        cards = list(cards)
        if not all(isinstance(card, FeatureCard) for card in cards):
            raise TypeError("FeatureBrowser shows FeatureCard objects (from interp.dictionaries.cards)")
        self.cards = cards
        self.data = {
            "title": title,
            "sort": sort,
            "cards": [card.to_dict() for card in cards],
            "start": max(range(len(cards)), key=lambda i: cards[i].density) if cards else 0,
        }
        self.id = f"interp-features-{uuid.uuid4().hex[:12]}"


def feature_card_view(card: FeatureCard) -> FeatureBrowser:
    """One card on its own (a browser of one: no list, no search)."""
    return FeatureBrowser([card], title=card.title)
