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

import math
import os
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from interp.base.errors import InputError, InterpError
from interp.base.schema import Strict
from interp.data.tasks.options import TaskConfig
from interp.runner.kinds import TAGS, AnalysisConfig
from interp.runner.text_source import resolve_paths

DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


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
    device: str = Field("auto", description="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")

    @field_validator("device")
    @classmethod
    def _a_device_that_computes(cls, device: str) -> str:
        if not DEVICE.fullmatch(device):
            raise ValueError(
                f"device {device!r} is not a torch device a run can compute on; use auto, cpu, cuda, "
                "cuda:N or mps ('meta' holds no values; 'xla' is not supported)"
            )
        return device


class ExperimentConfig(Strict):
    """A whole experiment config: seed, model, task, analyses and batching."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
        parts = [str(part) for part in item["loc"] if part not in TAGS]  # union tags name no field
        where = ".".join(parts) or "(top level)"
        value = item.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  {where}: {item['msg']}{shown}")
    return "\n".join(lines)


# analysis options holding dictionary directories (a corpus's paths: `text_source.resolve_paths`)
DICTIONARY_PATHS = ("dictionaries", "transcoders")
FILE_PATHS = ("labels_file", "dictionary")  # analysis options holding one file's or directory's path


def _resolve_paths(data: dict, base_dir: str | Path) -> dict:
    """Analysis options that name files (`DICTIONARY_PATHS`, `FILE_PATHS`, a corpus's `files`), made absolute against
    `base_dir` (the config file's folder), as `pairs_file` is read: the resolved config then names the
    same files anywhere."""
    analyses = data.get("analysis")
    if not isinstance(analyses, list):
        return data
    tables = []
    for table in analyses:
        if isinstance(table, dict):
            table = resolve_paths(table, base_dir)
            for key in DICTIONARY_PATHS:
                if isinstance(table.get(key), list):
                    table[key] = [
                        os.path.abspath(Path(base_dir) / v) if isinstance(v, str) and v else v
                        for v in table[key]
                    ]
            for key in FILE_PATHS:
                if isinstance(table.get(key), str) and table[key]:
                    table[key] = os.path.abspath(Path(base_dir) / table[key])
        tables.append(table)
    return {**data, "analysis": tables}


def parse_config(data: dict, source: str = "config", base_dir: str | Path = ".") -> ExperimentConfig:
    """Validate a config given as a dict (parsed TOML); a `ConfigError` lists every bad field.

    A `task.pairs_file` (relative to `base_dir`, the config file's folder) is read into `task.pairs`, so
    the resolved config, and its hash, hold the pairs themselves (not the file's name or line numbers)."""
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
    if isinstance(data, dict):
        data = _resolve_paths(data, base_dir)
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source} is not a valid experiment config:\n{_describe(error)}") from None
    to_toml(config)  # every value must be writable to the resolved config: refuse it now if not
    return config


def load_config(path: str | Path, model: dict | None = None) -> ExperimentConfig:
    """Read and validate a TOML experiment config; a `ConfigError` names the file and every bad field.

    `model`: fields of `[model]` that replace the file's (the command line's --model, --device, --dtype)."""
    path = Path(path)
    return parse_config(read_toml(path, model), str(path), path.parent)


def read_toml(path: Path, model: dict | None = None) -> dict:
    """The tables of a TOML config file (`interp run`'s or `interp train`'s), a `ConfigError` naming the
    file if it is missing, unreadable, not UTF-8 or not TOML; `model` fields replace the file's `[model]`."""
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
    if model:
        table = data.get("model", {})
        data["model"] = {**(table if isinstance(table, dict) else {}), **model}
    return data


def to_toml(config: ExperimentConfig) -> str:
    """The resolved config as TOML: every field read, defaults included, and only those (its hash is
    this text's, so it holds what a run depends on: a pairs file's pairs, not its name or lines)."""
    lines = [f"seed = {config.seed}", f"batch_size = {config.batch_size}"]
    lines.append(f"memory_budget_mb = {config.memory_budget_mb}")
    lines.append("\n[model]")
    lines += [_toml_line("model", k, v) for k, v in config.model.model_dump(mode="json").items()]
    lines.append("\n[task]")
    task = config.task.dump()
    pairs = task.pop("pairs", [])
    task.pop("pairs_file", None)  # its pairs are written out below
    lines += [_toml_line("task", k, v) for k, v in task.items()]
    for i, pair in enumerate(pairs):
        lines.append("\n[[task.pairs]]")
        lines += [
            _toml_line(f"task.pairs.{i}", k, v) for k, v in pair.items() if k != "line" and v is not None
        ]
    for i, analysis in enumerate(config.analysis):
        lines.append("\n[[analysis]]")
        lines += [_toml_line(f"analysis.{i}", k, v) for k, v in analysis.dump().items()]
    return "\n".join(lines) + "\n"


def _toml_line(where: str, key: str, value) -> str:
    return f"{key} = {_toml_value(value, f'{where}.{key}')}"


def _toml_value(value, where: str) -> str:
    """`value` as TOML (booleans, integers, finite floats, strings and arrays of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {value!r} is not allowed; use a finite number")
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value, where)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    raise ConfigError(f"{where}: {value!r} cannot be written to a TOML config")


def _toml_string(text: str, where: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, the rest as it is
    (characters beyond the BMP included: an escaped UTF-16 surrogate pair is not valid TOML)."""
    out = []
    for char in text:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            raise ConfigError(
                f"{where}: {text!r} holds a lone UTF-16 surrogate (U+{code:04X}), which is not a character; "
                "use the character itself (e.g. an emoji), not half of its JSON escape"
            )
        if char in '"\\':
            out.append("\\" + char)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
