"""The report section of a `feature_cards` analysis: the feature browser over its cards, and a table."""

from __future__ import annotations

from interp.dictionaries.cards import FeatureCard
from interp.report.html import Section
from interp.viz.features import FeatureBrowser

UNIT = "density: fraction of corpus tokens a latent is active on"


def _snippet(card: FeatureCard, width: int = 6) -> str:
    if not card.contexts:
        return ""
    context = card.contexts[0]
    start = max(0, context.max_index - width)
    before = "".join(context.tokens[start : context.max_index])
    return f"{before}[[{context.tokens[context.max_index]}]]"


def feature_cards_section(entry: dict) -> Section:
    """The browser of every card of the analysis and one table row per card."""
    cards = [FeatureCard.from_dict(card) for card in entry["feature_cards"]]
    rows = [
        [
            card.title,
            f"{card.density:.4f}",
            f"{card.max_act:.4g}",
            ", ".join(repr(t) for t, _ in (card.promoted or [])[:3]),
            _snippet(card),
        ]
        for card in cards
    ]
    densest = max(cards, key=lambda card: card.density, default=None)
    dictionaries = list(dict.fromkeys(card.dictionary for card in cards))
    finding = (
        f"{len(cards)} latents of {len(dictionaries)} dictionar{'y' if len(dictionaries) == 1 else 'ies'}; densest "
        f"{densest.title} ({densest.density:.4f}, top context {_snippet(densest)!r})"
        if densest is not None
        else "no latents"
    )
    return Section(
        title=f"{entry['name']} ({entry['kind']})",
        explanation=(
            f"{entry.get('explanation', '')} Search the list by token, sort it, and click a latent for its card; "
            "in the contexts the background is the activation (hover a token for its value, the largest is "
            "outlined). The table gives each latent's top context up to its largest activation (in [[ ]])."
        ).strip(),
        widgets=[FeatureBrowser(cards, title=entry["name"])],
        table_header=["latent", "density", "max activation", "promotes", "top context"],
        table_rows=rows,
        finding=finding,
        unit=UNIT,
    )
