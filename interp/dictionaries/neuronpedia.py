"""Feature cards in Neuronpedia's feature JSON, both ways, so cards can be shared and uploaded.

The layout is the one SAEDashboard's `NeuronpediaConverter` writes and Neuronpedia imports: a batch
file `{"model_id", "layer", "sae_set", "sae_id_suffix", "features": [...]}` whose features carry

    feature_index                      the latent
    pos_str / pos_values               promoted tokens and their logit effects (largest first)
    neg_str / neg_values               suppressed tokens (most negative first)
    frac_nonzero                       density: the fraction of tokens the latent is active on
    freq_hist_data_bar_values/heights  the histogram of its non-zero activations: bin centres, counts
    logits_hist_data_bar_values/heights the histogram of its logit effects over the vocabulary
    activations                        top contexts: {"tokens", "values", "bin_min": -1, "bin_max": the
                                       largest activation, "bin_contains": -1, "qualifying_token_index"}
    n_prompts_total, n_tokens_in_prompt, dataset; neuron_alignment_*, correlated_*, decoder_weights_dist
                                       (written empty: not computed here)

Bars are bin centres in that layout; reading one back, edges are the centres -/+ half the (uniform)
bin width. Fields a card has and the layout does not (mean activation, a transcoder's input tokens,
hook names) are left out on export and None on import.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from interp.base.errors import InputError
from interp.base.files import read_json, write_atomic
from interp.dictionaries.cards import Context, FeatureCard

MAX_BYTES = 512 * 1024**2
REQUIRED = ("feature_index", "activations", "frac_nonzero")
EMPTY_LISTS = (
    "neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
    "correlated_neurons_indices", "correlated_neurons_l1", "correlated_neurons_pearson",
    "correlated_features_indices", "correlated_features_l1", "correlated_features_pearson",
    "decoder_weights_dist",
)  # fmt: skip


def _centres(edges: Sequence[float]) -> list[float]:
    return [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _edges(centres: Sequence[float]) -> list[float]:
    if not centres:
        return []
    width = centres[1] - centres[0] if len(centres) > 1 else 0.0
    return [c - width / 2 for c in centres] + [centres[-1] + width / 2]


def to_neuronpedia(card: FeatureCard, *, n_prompts_total: int = 0, dataset: str = "") -> dict:
    """One card as a feature of Neuronpedia's batch layout (module docstring)."""
    contexts = [
        {
            "bin_min": -1,
            "bin_max": c.max_value,
            "bin_contains": -1,
            "tokens": list(c.tokens),
            "values": list(c.values),
            "qualifying_token_index": c.max_index,
        }
        for c in card.contexts
    ]
    out = {
        "feature_index": card.feature,
        **{name: [] for name in EMPTY_LISTS[:-1]},
        "neg_str": [t for t, _ in card.suppressed or ()],
        "neg_values": [v for _, v in card.suppressed or ()],
        "pos_str": [t for t, _ in card.promoted or ()],
        "pos_values": [v for _, v in card.promoted or ()],
        "frac_nonzero": card.density,
        "freq_hist_data_bar_values": _centres(card.histogram_edges),
        "freq_hist_data_bar_heights": list(card.histogram_counts),
        "logits_hist_data_bar_heights": list(card.logit_counts),
        "logits_hist_data_bar_values": _centres(card.logit_edges),
        "n_prompts_total": n_prompts_total,
        "n_tokens_in_prompt": max((len(c.tokens) for c in card.contexts), default=0),
        "dataset": dataset,
        "decoder_weights_dist": [],
        "activations": contexts,
    }
    return out


def _pairs(feature: dict, strings: str, values: str, where: str) -> list[tuple[str, float]] | None:
    tokens, numbers = feature.get(strings, []), feature.get(values, [])
    if len(tokens) != len(numbers):
        raise InputError(
            f"{where}: {strings} has {len(tokens)} entries and {values} {len(numbers)}; they pair up."
        )
    return list(zip(map(str, tokens), map(float, numbers), strict=True)) or None


def from_neuronpedia(
    feature: dict, *, dictionary: str = "neuronpedia", where: str = "feature"
) -> FeatureCard:
    """A card from one feature of Neuronpedia's batch layout; a missing or malformed field is an
    error naming it."""
    if not isinstance(feature, dict):
        raise InputError(f"{where} is a {type(feature).__name__}; a Neuronpedia feature is a JSON object.")
    missing = [name for name in REQUIRED if name not in feature]
    if missing:
        raise InputError(
            f"{where} has no {', '.join(missing)} (a Neuronpedia feature has {', '.join(REQUIRED)})."
        )
    contexts = []
    for i, activation in enumerate(feature["activations"]):
        tokens, values = activation.get("tokens"), activation.get("values")
        if (
            not isinstance(tokens, list)
            or not isinstance(values, list)
            or len(tokens) != len(values)
            or not tokens
        ):
            raise InputError(
                f"{where} activations[{i}]: tokens and values must be lists of the same, non-zero length."
            )
        values = [float(v) for v in values]
        index = activation.get("qualifying_token_index")
        if index is None:
            index = max(range(len(values)), key=values.__getitem__)
        if not 0 <= int(index) < len(tokens):
            raise InputError(
                f"{where} activations[{i}]: qualifying_token_index {index} is outside its {len(tokens)} tokens."
            )
        contexts.append(Context(tokens=[str(t) for t in tokens], values=values, max_index=int(index)))
    counts = [int(c) for c in feature.get("freq_hist_data_bar_heights", [])]
    centres = [float(v) for v in feature.get("freq_hist_data_bar_values", [])]
    logit_counts = [int(c) for c in feature.get("logits_hist_data_bar_heights", [])]
    logit_centres = [float(v) for v in feature.get("logits_hist_data_bar_values", [])]
    if len(counts) != len(centres) or len(logit_counts) != len(logit_centres):
        raise InputError(
            f"{where}: each histogram's bar values and bar heights must pair up (one value per bar)."
        )
    return FeatureCard(
        dictionary=dictionary,
        feature=int(feature["feature_index"]),
        hook_name=None,
        hook_name_out=None,
        kind="sae",
        n_tokens=None,
        density=float(feature["frac_nonzero"]),
        max_act=max((max(c.values) for c in contexts), default=0.0),
        mean_act=None,
        mean_active=None,
        histogram_counts=counts,
        histogram_edges=_edges(centres),
        contexts=contexts,
        promoted=_pairs(feature, "pos_str", "pos_values", where),
        suppressed=_pairs(feature, "neg_str", "neg_values", where),
        logit_counts=logit_counts,
        logit_edges=_edges(logit_centres),
    )


def write_neuronpedia(
    cards: Sequence[FeatureCard],
    path: str | Path,
    *,
    model_id: str,
    layer: int,
    sae_set: str,
    dataset: str = "",
    n_prompts_total: int = 0,
) -> Path:
    """Write `cards` as one Neuronpedia batch file (atomically)."""
    batch = {
        "model_id": model_id,
        "layer": layer,
        "sae_set": sae_set,
        "sae_id_suffix": None,
        "features": [to_neuronpedia(c, n_prompts_total=n_prompts_total, dataset=dataset) for c in cards],
    }
    return write_atomic(path, json.dumps(batch, allow_nan=False))


def read_neuronpedia(path: str | Path, *, dictionary: str | None = None) -> list[FeatureCard]:
    """The cards of a Neuronpedia batch file (a single feature object is read too)."""
    data = read_json(path, MAX_BYTES, what="Neuronpedia file")
    if isinstance(data, dict) and "features" in data:
        label = dictionary or f"{data.get('model_id', '')}/{data.get('layer', '')}-{data.get('sae_set', '')}"
        features = data["features"]
        if not isinstance(features, list):
            raise InputError(f"{path}: features is a {type(features).__name__}; it must be a list.")
        return [
            from_neuronpedia(f, dictionary=label, where=f"{path} features[{i}]")
            for i, f in enumerate(features)
        ]
    return [from_neuronpedia(data, dictionary=dictionary or "neuronpedia", where=str(path))]
