"""Architectures by name: adding one is one file in `architectures/` and one `@register_architecture`.

SAELens's `registry.py` is the model: a name maps to the dictionary class, whose `config_class` is
the dataclass of its fields. The package's `__init__` imports `architectures/`, whose modules
register themselves, so the built-in names are known as soon as `interp.dictionaries` is imported.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from interp.base.errors import InputError
from interp.dictionaries.base import Dictionary, DictionaryConfig

_ARCHITECTURES: dict[str, type[Dictionary]] = {}


def register_architecture(cls: type[Dictionary]) -> type[Dictionary]:
    """Class decorator: make `cls` (a `Dictionary` with `config_class.architecture` set) known by name."""
    name = cls.config_class.architecture
    if not name:
        raise ValueError(f"{cls.__name__}.config_class has no architecture name")
    if name in _ARCHITECTURES and _ARCHITECTURES[name] is not cls:
        raise ValueError(f"architecture {name!r} is already registered by {_ARCHITECTURES[name].__name__}")
    _ARCHITECTURES[name] = cls
    return cls


def architectures() -> list[str]:
    """The registered architecture names."""
    return sorted(_ARCHITECTURES)


def dictionary_class(architecture: str) -> type[Dictionary]:
    """The dictionary class of an architecture name; an unknown name is an error listing the known ones."""
    if architecture not in _ARCHITECTURES:
        raise InputError(
            f"Unknown dictionary architecture {architecture!r}; known: {', '.join(sorted(_ARCHITECTURES))}."
        )
    return _ARCHITECTURES[architecture]


def make_config(architecture: str, **fields: Any) -> DictionaryConfig:
    """An architecture's config from its fields; a field it does not have is an error naming it."""
    config_class = dictionary_class(architecture).config_class
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise InputError(
            f"Architecture {architecture!r} has no field(s) {', '.join(unknown)}; its fields are "
            f"{', '.join(sorted(known))}."
        )
    return config_class(**fields)


def make_dictionary(architecture: str | DictionaryConfig, *, seed: int = 0, **fields: Any) -> Dictionary:
    """A freshly initialised dictionary, e.g. `make_dictionary("topk", d_in=160, d_sae=1280, k=16,
    hook_name="blocks.2.hook_resid_pre")`, or from a config object."""
    if isinstance(architecture, DictionaryConfig):
        if fields:
            raise InputError("Give either a config object or its fields, not both.")
        cfg = architecture
    else:
        cfg = make_config(architecture, **fields)
    return dictionary_class(cfg.architecture)(cfg, seed=seed)
