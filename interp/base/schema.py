"""The base of every config table: a pydantic model in which unknown fields are errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A config table: an unknown (e.g. misspelled) field is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")
