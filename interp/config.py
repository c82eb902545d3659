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

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from interp.errors import InterpError

AnalysisKind = Literal[
    "patch_resid_pre",
    "patch_attn_out",
    "patch_mlp_out",
    "patch_head_out",
    "patch_head_q",
    "patch_head_k",
    "patch_head_v",
    "patch_head_pattern",
    "patch_head_out_by_pos",
    "path_patch",
    "attrib_head_out",
    "attrib_resid_pre",
    "dla_head",
    "dla_layer",
    "logit_lens",
    "ablate_head",
    "head_scores",
]


class ConfigError(InterpError, ValueError):
    """A config file that does not validate; the message lists every bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    source: str = Field(
        "toy", description="'toy', a hub id such as 'microsoft/phi-2', an alias or a directory"
    )
    weights: Literal["raw", "folded"] = Field("raw", description="raw: HF numerics; folded: LayerNorm folded")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="auto: bfloat16 on CUDA, else float32"
    )
    device: str = Field("auto", description="auto: cuda, then mps, then cpu")


class PairConfig(_Strict):
    clean: str = Field(description="prompt on which the model should say `answer`")
    corrupted: str = Field(description="same-length prompt on which it should not")
    answer: str = Field(description="the correct next token (single token, usually with a leading space)")
    wrong: str = Field(description="the competing next token")


class TaskConfig(_Strict):
    name: Literal["ioi", "induction", "docstring", "custom"] = Field(
        "ioi", description="which task builds the prompt pairs"
    )
    pairs: list[PairConfig] = Field(default_factory=list, description="inline pairs (task 'custom' only)")
    n_pairs: int = Field(32, ge=1, le=100_000, description="number of pairs generated (ioi, induction)")
    metric: Literal["logit_diff", "prob", "log_prob", "kl"] = Field(
        "logit_diff", description="patching metric"
    )
    names: list[str] | None = Field(None, description="ioi: names to use (each must be one token)")
    seq_len: int = Field(10, ge=2, le=512, description="induction: length of the repeated random sequence")
    prepend_bos: bool = Field(False, description="put the tokenizer's BOS token before every prompt")

    @model_validator(mode="after")
    def _pairs_only_for_custom(self) -> TaskConfig:
        if self.name == "custom" and not self.pairs:
            raise ValueError("task 'custom' needs at least one entry in `pairs`")
        if self.name != "custom" and self.pairs:
            raise ValueError(f"`pairs` is only for task 'custom', not {self.name!r}")
        return self


class AnalysisConfig(_Strict):
    kind: AnalysisKind = Field(description="what to compute (see `interp tasks` and the README)")
    name: str | None = Field(None, description="a label for this analysis (default: the kind)")
    direction: Literal["denoising", "noising"] = Field(
        "denoising", description="patching: denoising patches clean into corrupted; noising the reverse"
    )
    method: Literal["zero", "mean", "resample"] = Field("mean", description="ablate_head: how to ablate")
    reference: Literal["corrupted", "shuffled"] = Field(
        "corrupted", description="ablate_head: prompts that mean/resample ablation draws from"
    )
    score: Literal["previous_token", "induction", "duplicate_token", "first_token"] = Field(
        "induction", description="head_scores: which score"
    )
    senders: list[tuple[int, int]] = Field(
        default_factory=list, description="path_patch: [[layer, head], ...]"
    )
    receivers: list[tuple[int, int]] | Literal["logits"] = Field(
        "logits", description="path_patch: [[layer, head], ...] or 'logits'"
    )
    receiver_input: Literal["q", "k", "v"] = Field(
        "q", description="path_patch: which input of the receivers"
    )
    top_k: int = Field(10, ge=1, le=1000, description="rows in the report's top-k table")

    @property
    def label(self) -> str:
        return self.name or self.kind


class ExperimentConfig(_Strict):
    seed: int = Field(0, description="seed for generated prompts and resampling")
    model: ModelConfig = Field(default_factory=ModelConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    analysis: list[AnalysisConfig] = Field(min_length=1, description="one [[analysis]] table per analysis")
    batch_size: int = Field(16, ge=1, description="prompts per forward pass in patching runs")
    memory_budget_mb: int = Field(2048, ge=1, description="activation memory per patching chunk, MiB")

    @model_validator(mode="after")
    def _unique_labels(self) -> ExperimentConfig:
        labels = [a.label for a in self.analysis]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
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


def parse_config(data: dict, source: str = "config") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source} is not a valid experiment config:\n{_describe(error)}") from None


def load_config(path: str | Path) -> ExperimentConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    return parse_config(data, str(path))


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
            lines.append(f"{key} = {_toml_value(value)}")
        for pair in data[table].get("pairs", []):
            lines.append(f"\n[[{table}.pairs]]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in pair.items()]
    for analysis in data["analysis"]:
        lines.append("\n[[analysis]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in analysis.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return json.dumps(value)
    return json.dumps(value)  # lists of lists / strings are valid TOML arrays in JSON form
