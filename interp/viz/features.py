"""The feature browser: many feature cards in one view, in notebooks and in reports alike.

A list of latents (search by token: a context's tokens, promoted / suppressed or input tokens; sort by
density, max activation or index) beside the selected latent's card: density, max and mean
activation, the histogram of its activations, its top contexts with every token's activation as the
background (hover for the value; the largest is outlined), the tokens it promotes and suppresses and,
for a transcoder, the tokens and earlier latents that drive it. One card alone is a browser of one.

As the head explorer (`explorer.py`), the renderer is one plain-DOM script (`features.js`, every data
string set as text, never parsed as markup) run as an anywidget in a notebook and inlined once in a
report (`bundle_js`), with all data in the page: it works offline, saved or not.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from interp.base.html import script_json
from interp.dictionaries.cards import FeatureCard

NOT_DISPLAYED = (
    "Feature browser (an interactive widget): its view was not saved with this notebook. Run the cell in "
    "JupyterLab to display it."
)
SORTS = ("density", "max_act", "feature")


@lru_cache(maxsize=1)
def features_js() -> str:
    """The renderer's source, safe to inline in a <script> element."""
    return (
        (Path(__file__).parent / "features.js").read_text(encoding="utf-8").replace("</script", "<\\/script")
    )


class FeatureBrowser:
    """The data of one browser; displays itself as a widget in notebooks and as HTML in reports."""

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

    @staticmethod
    def bundle_js() -> str:
        """The script a page needs once for every browser in it (a report inlines it in <head>)."""
        return features_js()

    def html(self, include_bundle: bool = True) -> str:
        """A container and the call that renders into it (plus the renderer, if asked)."""
        script = f"<script>{features_js()}</script>" if include_bundle else ""
        return (
            f"{script}<div id='{self.id}' class='interp-features-root'><p class='interp-needs-js'>"
            "Feature browser: its JavaScript has not run here; open the report in a web browser.</p></div>"
            f"<script>interpFeatures(document.getElementById({script_json(self.id)}), "
            f"{script_json(self.data)});</script>"
        )

    def widget(self):
        """The browser as an anywidget (what a notebook displays)."""
        return _widget_class()(data=self.data)

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.widget()._repr_mimebundle_(include=include, exclude=exclude)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data["text/plain"] = NOT_DISPLAYED
        return bundle


def feature_card_view(card: FeatureCard) -> FeatureBrowser:
    """One card on its own (a browser of one: no list, no search)."""
    return FeatureBrowser([card], title=card.title)


@lru_cache(maxsize=1)
def _widget_class():
    import anywidget
    import traitlets

    class FeatureBrowserWidget(anywidget.AnyWidget):
        _esm = (
            features_js()
            + "\nexport default { render({ model, el }) { interpFeatures(el, model.get('data')); } };\n"
        )
        data = traitlets.Dict().tag(sync=True)

    return FeatureBrowserWidget
