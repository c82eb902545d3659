"""The base of every kind's options model: the `[[analysis]]` fields all kinds share, and the rules.

Each kind (`interp.runner.kinds`) declares its own model, a subclass with `kind: Literal[...]` and the
fields it reads, each with a description (`interp tasks` prints them). The rules, for every kind:

- a field the kind does not declare is an error naming the kind and the options it does read;
- a field that the kind declares but does not read *with the other values given* (`unread`: e.g.
  `receiver_input` when the receivers are the logits) is an error when it is set, saying why;
- numbers are finite (no NaN or inf: the resolved config and results.json must hold them).

The resolved config and results.json write each analysis's `dump()`: the fields it reads, defaults
included, and nothing else, so reading the resolved config back gives the same config.

This module (like every kind's options model) imports neither torch nor a method: the `Literal`s of
the methods' switches are written again here, and tests hold them equal to the methods' own (the
ablation methods are imported from `interp.methods.vocabulary`, which imports nothing heavy).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import ConfigDict, Field, field_validator, model_validator

from interp.base.schema import Strict
from interp.runner.labels import LABEL_RULE, label_problem

Direction = Literal["denoising", "noising"]  # interp.methods.contrastive.Direction
Where = Literal["all", "prompt", "generated"]  # interp.methods.interventions.Where
Head = tuple[int, int]

COMMON_OPTIONS = ("kind", "name", "top_k")


class AnalysisOptions(Strict):
    """One `[[analysis]]` table: the fields every kind has (subclasses add the kind's own)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: str = Field(description="what to compute: one of the registered kinds (`interp tasks` lists them)")
    name: str | None = Field(None, description=f"a label for this analysis (default: the kind); {LABEL_RULE}")
    top_k: int = Field(10, ge=1, le=1000, description="rows in the report's top-k table")

    @classmethod
    def kinds(cls) -> tuple[str, ...]:
        """The kinds this model is the options of."""
        return get_args(cls.model_fields["kind"].annotation)

    @classmethod
    def own_fields(cls) -> list[str]:
        """The options of the kind itself (besides kind, name and top_k)."""
        return [name for name in cls.model_fields if name not in COMMON_OPTIONS]

    def unread(self) -> dict[str, str]:
        """Declared options these values make the kind ignore, each with the reason (none by default)."""
        return {}

    @model_validator(mode="before")
    @classmethod
    def _fields_the_kind_reads(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.model_config.get("extra") == "forbid":
            unknown = sorted(str(key) for key in data if key not in cls.model_fields)
            if unknown:
                reads = ", ".join(cls.own_fields()) or "none besides name and top_k"
                raise ValueError(
                    f"{data.get('kind')} does not read {', '.join(unknown)}; its options are: {reads}"
                )
        return data

    @model_validator(mode="after")
    def _nothing_set_that_is_ignored(self) -> AnalysisOptions:
        unread = self.unread()
        for name in sorted(set(unread) & self.model_fields_set):
            raise ValueError(f"{self.kind} does not read {name} = {getattr(self, name)!r}: {unread[name]}")
        return self

    @field_validator("name")
    @classmethod
    def _a_safe_label(cls, name: str | None) -> str | None:
        if name is not None and (problem := label_problem(name)):
            raise ValueError(problem)
        return name

    @property
    def label(self) -> str:
        return self.name or self.kind

    def dump(self) -> dict:
        """The table as the resolved config writes it: every field read, defaults included."""
        return self.model_dump(mode="json", exclude=set(self.unread()), exclude_none=True)

    def read_options(self) -> dict:
        """The kind's own options as read (for results.json)."""
        return {k: v for k, v in self.dump().items() if k not in COMMON_OPTIONS}


def heads_problem(heads: list[Head], field: str, n_layers: int, n_heads: int) -> str | None:
    """Why `heads` (the option `field`) are not heads of a model of that size, or None."""
    bad = [list(h) for h in heads if not (0 <= h[0] < n_layers and 0 <= h[1] < n_heads)]
    if bad:
        return (
            f"{field} = {bad} are not heads of this model (layers 0..{n_layers - 1}, heads 0..{n_heads - 1})"
        )
    return None
