"""The analysis kinds, one module per family; importing this package registers every kind.

    patching        patch_<site>: exact activation patching of one site
    path_patching   path_patch
    attribution     attrib_<site>: attribution patching
    lens            dla_head, dla_layer, logit_lens
    head_scores     head_scores
    ablation        ablate_head
    edges           edge_patch, eap, eap_ig, circuit_faithfulness
    steering        steer
    generation      generate
    dictionaries    dictionary_eval
    features        feature_attribution, feature_circuit
    feature_cards   feature_cards
    attribution_graph  attribution_graph
    representations probe, sparse_probe, das

Each module pairs a kind's options model (`interp.runner.options`) with its compute, and imports its
method only inside the compute: validating a config or listing the kinds loads neither torch nor a
method. `AnalysisConfig` is the type of one `[[analysis]]` table: the options model of its `kind`.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Union

from pydantic import ConfigDict, Discriminator, Field, Tag, field_validator

from interp.runner.kinds import (  # each registers its kinds
    ablation,
    attribution,
    attribution_graph,
    dictionaries,
    edges,
    feature_cards,
    features,
    generation,
    head_scores,
    lens,
    patching,
    path_patching,
    representations,
    steering,
)
from interp.runner.options import AnalysisOptions
from interp.runner.registry import REGISTRY, AnalysisSpec, spec_for

# the order `interp tasks` and error messages list the kinds in
FAMILIES = (
    patching, path_patching, attribution, lens, head_scores, ablation, edges, steering, generation, dictionaries,
    features, feature_cards, attribution_graph, representations,
)  # fmt: skip
_ORDER = {family.__name__: i for i, family in enumerate(FAMILIES)}
for _spec in sorted(REGISTRY.values(), key=lambda spec: _ORDER[spec.options.__module__]):
    REGISTRY[_spec.kind] = REGISTRY.pop(_spec.kind)

UNKNOWN = "UnknownKind"


class UnknownKind(AnalysisOptions):
    """An `[[analysis]]` table whose kind is not registered: an error that suggests registered ones."""

    model_config = ConfigDict(extra="allow")  # the kind is the error, not its fields
    kind: Any = Field(description="not a registered kind")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: Any) -> str:
        if not isinstance(kind, str):
            raise ValueError(
                f"kind must be one of the registered kinds, not {kind!r}. Allowed: {', '.join(REGISTRY)}"
            )
        close = difflib.get_close_matches(kind, list(REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown analysis kind {kind!r}{hint} Allowed: {', '.join(REGISTRY)}")


def options_models() -> list[type[AnalysisOptions]]:
    """Every kind's options model, each once, in registration order."""
    return list(dict.fromkeys(spec.options for spec in REGISTRY.values()))


def _tag(data: Any) -> str:
    kind = data.get("kind") if isinstance(data, dict) else getattr(data, "kind", None)
    spec = REGISTRY.get(kind) if isinstance(kind, str) else None
    return spec.options.__name__ if spec else UNKNOWN


TAGS = frozenset([model.__name__ for model in options_models()] + [UNKNOWN])

AnalysisConfig = Annotated[
    Union[  # noqa: UP007  (a union built from the registry)
        tuple(Annotated[model, Tag(model.__name__)] for model in options_models())
        + (Annotated[UnknownKind, Tag(UNKNOWN)],)
    ],
    Discriminator(_tag),
]

__all__ = [
    "REGISTRY",
    "TAGS",
    "AnalysisConfig",
    "AnalysisOptions",
    "AnalysisSpec",
    "options_models",
    "spec_for",
]
