"""Experiment configuration: the TOML schema, validated with errors that name the field.

A config file has a `[model]`, a `[task]` and one `[[analysis]]` table per analysis:

    seed = 0
    [model]
    source = "toy"            # or "microsoft/phi-2", or a local directory; --model overrides it
    weights = "raw"           # or "folded"
    [task]
    name = "ioi"              # or "induction", "docstring", "custom"
    n_pairs = 32
    metric = "logit_diff"
    [[analysis]]
    kind = "patch_head_out"
    [[analysis]]
    kind = "ablate_head"
    method = "mean"

Every field has a description, which `interp tasks` prints.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from interp.base.errors import InputError, InterpError
from interp.base.schema import Strict
from interp.data.tasks.options import TaskConfig
from interp.runner.options import AnalysisOptions
from interp.runner.registry import REGISTRY


class ConfigError(InterpError, ValueError):
    """A config file that does not validate; the message lists every bad field."""


class ModelConfig(Strict):
    """The `[model]` table: which model, weights, dtype and device."""

    source: str = Field(
        "toy", description="'toy', a hub id such as 'microsoft/phi-2', an alias or a directory"
    )
    weights: Literal["raw", "folded"] = Field("raw", description="raw: HF numerics; folded: LayerNorm folded")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="auto: bfloat16 on CUDA, else float32"
    )
    device: str = Field("auto", description="auto: cuda, then mps, then cpu")


class AnalysisConfig(AnalysisOptions):
    """One `[[analysis]]` table: a registered kind and the options it reads."""

    kind: str = Field(description="what to compute: one of the registered kinds (`interp tasks` lists them)")

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data):
        if isinstance(data, dict) and data.get("kind") in REGISTRY:
            data = {**REGISTRY[data["kind"]].defaults, **data}
        return data

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in REGISTRY:
            close = difflib.get_close_matches(kind, list(REGISTRY), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"unknown analysis kind {kind!r}{hint} Allowed: {', '.join(REGISTRY)}")
        return kind

    @model_validator(mode="after")
    def _options_the_kind_reads(self) -> AnalysisConfig:
        reads = REGISTRY[self.kind].options
        defaults = AnalysisOptions(**REGISTRY[self.kind].defaults)
        unread = sorted(
            name
            for name in AnalysisOptions.model_fields
            if name not in reads and getattr(self, name) != getattr(defaults, name)
        )
        if unread:
            raise ValueError(
                f"{self.kind} does not read {', '.join(unread)}; its options are: {', '.join(sorted(reads))}"
            )
        return self

    @property
    def label(self) -> str:
        return self.name or self.kind


class ExperimentConfig(Strict):
    """A whole experiment config: seed, model, task, analyses and batching."""

    seed: int = Field(
        0, ge=0, lt=2**63, description="seed for generated prompts and resampling (0 .. 2**63 - 1)"
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    analysis: list[AnalysisConfig] = Field(min_length=1, description="one [[analysis]] table per analysis")
    batch_size: int = Field(16, ge=1, description="prompts per forward pass in patching runs")
    memory_budget_mb: int = Field(2048, ge=1, description="activation memory per patching chunk, MiB")

    @model_validator(mode="after")
    def _unique_labels(self) -> ExperimentConfig:
        labels = [a.label.lower() for a in self.analysis]  # case-insensitive: they name directories
        duplicates = sorted({a.label for a in self.analysis if labels.count(a.label.lower()) > 1})
        if duplicates:
            raise ValueError(f"analysis names must be unique; give `name = ...` to these: {duplicates}")
        return self


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        value = item.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  {where}: {item['msg']}{shown}")
    return "\n".join(lines)


def parse_config(data: dict, source: str = "config", base_dir: str | Path = ".") -> ExperimentConfig:
    """Validate a config given as a dict (parsed TOML); a `ConfigError` lists every bad field.

    A `task.pairs_file` (relative to `base_dir`, the config file's folder) is read into `task.pairs`, so
    the resolved config, and its hash, hold the pairs themselves."""
    task = data.get("task") if isinstance(data, dict) else None
    if isinstance(task, dict) and task.get("pairs_file") is not None:
        from interp.data.tasks.custom import read_pairs_file

        if task.get("pairs"):
            raise ConfigError(
                f"{source}: give the pairs inline (`pairs`) or in a file (`pairs_file`), not both."
            )
        if not isinstance(task["pairs_file"], str):
            raise ConfigError(
                f"{source}: task.pairs_file must be a path (a string), not {task['pairs_file']!r}."
            )
        try:
            pairs = read_pairs_file(Path(base_dir) / task["pairs_file"])
        except InputError as error:
            raise ConfigError(f"{source}: {error}") from None
        data = {**data, "task": {**task, "pairs": pairs}}
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source} is not a valid experiment config:\n{_describe(error)}") from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a TOML experiment config; a `ConfigError` names the file and every bad field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text (byte {error.start}); save it as UTF-8.") from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    return parse_config(data, str(path), path.parent)


def to_toml(config: ExperimentConfig) -> str:
    """The resolved config as TOML (every field, defaults included)."""
    data = config.model_dump(mode="json", exclude_none=True)
    lines = [f"seed = {data.pop('seed')}", f"batch_size = {data.pop('batch_size')}"]
    lines.append(f"memory_budget_mb = {data.pop('memory_budget_mb')}")
    for table in ("model", "task"):
        lines.append(f"\n[{table}]")
        for key, value in data[table].items():
            if key == "pairs":
                continue
            if key == "pairs_file":  # its pairs are written out below; reading the file again is not needed
                lines.append(f"# pairs read from pairs_file = {_toml_value(value)}")
                continue
            lines.append(f"{key} = {_toml_value(value)}")
        for pair in data[table].get("pairs", []):
            lines.append(f"\n[[{table}.pairs]]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in pair.items()]
    for analysis in data["analysis"]:  # each with the options its kind reads, defaults included
        reads = REGISTRY[analysis["kind"]].options
        lines.append("\n[[analysis]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in analysis.items() if k == "kind" or k in reads]
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return json.dumps(value)
    return json.dumps(value)  # lists of lists / strings are valid TOML arrays in JSON form
