"""The `interp train` config: `[model]`, `[data]` and one `[[dictionary]]` table per dictionary.

    checkpoint_every = 500000        # tokens between checkpoints (0: none)
    log_every = 50                   # optimiser steps between log records
    [model]
    source = "toy"                   # as in `interp run`
    [data]
    corpus = "toy"                   # or dataset = "NeelNanda/pile-10k", or files = ["corpus/"]
    context_length = 64
    pack = false
    n_tokens = 2000000               # training tokens per dictionary
    eval_tokens = 20000              # held-out tokens (read first, never trained on)
    [[dictionary]]
    name = "resid2_topk"
    hook = "blocks.2.hook_resid_pre"
    architecture = "topk"
    expansion = 8
    k = 16
    [[dictionary]]
    name = "mlp2_transcoder"
    kind = "transcoder"
    hook = "blocks.2.ln1.hook_normalized"
    hook_out = "blocks.2.hook_mlp_out"
    d_sae = 1280
    k = 16

Errors name the field, as `interp run`'s do. A field that does not apply to the chosen data source or
architecture is refused, not ignored. Architecture fields (`k`, `aux_k`, `l1_coefficient`, ...) are
those of the architecture's config (`interp.dictionaries.make_config`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from interp.base.schema import Strict
from interp.runner.config import ConfigError, ModelConfig, _describe, _toml_value, read_toml
from interp.runner.labels import LABEL, LABEL_RULE
from interp.runner.store import RUN_FILES
from interp.runner.text_source import DatasetSource, check_one_source, resolve_paths

TRAINING_FILES = {"checkpoint.pt", "training.json"}


class DataConfig(DatasetSource, Strict):
    """The `[data]` table: where the tokens come from (`interp.runner.text_source`) and how many are used."""

    n_tokens: int = Field(1_000_000, ge=1, description="training tokens per dictionary (the budget)")
    eval_tokens: int = Field(
        16384, ge=2, description="held-out tokens for metrics.json, read before training"
    )
    model_batch: int = Field(32, ge=1, description="rows per forward pass")

    @model_validator(mode="before")
    @classmethod
    def _one_source(cls, data: Any) -> Any:
        check_one_source(data, required=True)
        return data


class DictionaryTable(Strict):
    """One `[[dictionary]]` table: what to train on which hook(s), and how."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)  # the architecture's own fields

    name: str = Field(description=f"its directory in --out ({LABEL_RULE})")
    hook: str = Field(description="the hook point read, e.g. blocks.2.hook_resid_pre")
    kind: Literal["sae", "transcoder", "skip_transcoder"] = Field("sae", description="what it is")
    hook_out: str | None = Field(None, description="transcoders: the hook point written")
    architecture: str = Field("topk", description="relu, topk, batchtopk or jumprelu")
    d_sae: int | None = Field(None, ge=1, description="latents (or give expansion)")
    expansion: float | None = Field(None, gt=0, description="latents as a multiple of the hook's width")
    seed: int = Field(0, ge=0, lt=2**63, description="seed of its initial weights and its buffer's shuffle")
    encoder_init_norm: float | None = Field(
        None, gt=0, description="norm of each latent's encoder column at the start (default 1/sqrt(3))"
    )
    lr: float = Field(1e-3, gt=0, description="Adam's peak learning rate")
    batch_tokens: int = Field(4096, ge=1, description="activation vectors per optimiser step")
    buffer_tokens: int = Field(65536, ge=2, description="rows in its shuffling buffer (>= 2 batches)")
    lr_warmup_steps: int = Field(0, ge=0, description="steps of linear learning-rate warm-up")
    lr_decay_fraction: float = Field(0.2, ge=0, le=1, description="last fraction of steps decaying to 0")
    b_dec_init: Literal["auto", "geometric_median", "mean", "zeros"] = Field(
        "auto", description="b_dec's start"
    )
    normalize_activations: bool = Field(False, description="train on activations scaled to norm sqrt(width)")
    dead_after_tokens: int = Field(
        1_000_000, ge=1, description="tokens without firing before a latent is dead"
    )
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="Adam's betas")

    @field_validator("name")
    @classmethod
    def _a_label(cls, name: str) -> str:
        if not LABEL.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid dictionary name ({LABEL_RULE})")
        if name.lower() in {f.lower() for f in RUN_FILES | TRAINING_FILES}:
            raise ValueError(f"{name!r} names a run file; choose another name")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> DictionaryTable:
        from interp.dictionaries.base import DictionaryConfig
        from interp.dictionaries.registry import architectures, dictionary_class

        if self.architecture not in architectures():
            raise ValueError(
                f"architecture {self.architecture!r} is unknown; use {', '.join(architectures())}"
            )
        if (self.d_sae is None) == (self.expansion is None):
            raise ValueError("give exactly one of d_sae and expansion")
        if self.kind == "sae" and self.hook_out is not None:
            raise ValueError("hook_out is for transcoders; an SAE writes the hook it reads")
        if self.kind != "sae" and self.hook_out is None:
            raise ValueError(f"a {self.kind} needs hook_out, the hook point it writes")
        base = {f.name for f in dataclasses.fields(DictionaryConfig)}
        own = {f.name for f in dataclasses.fields(dictionary_class(self.architecture).config_class)} - base
        unknown = sorted(set(self.model_extra or {}) - own)
        if unknown:
            raise ValueError(
                f"unknown field(s) {', '.join(unknown)}; architecture {self.architecture!r} has "
                f"{', '.join(sorted(own)) or 'no fields of its own'}"
            )
        return self

    def architecture_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TrainConfig(Strict):
    """A whole `interp train` config."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    checkpoint_every: int = Field(
        1_000_000, ge=0, description="training tokens between atomic checkpoints (0: only at the end)"
    )
    log_every: int = Field(50, ge=1, description="optimiser steps between log records")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    dictionary: list[DictionaryTable] = Field(min_length=1, description="one [[dictionary]] per dictionary")

    @model_validator(mode="after")
    def _unique_names(self) -> TrainConfig:
        names = [d.name.lower() for d in self.dictionary]  # case-insensitive: they name directories
        duplicates = sorted({d.name for d in self.dictionary if names.count(d.name.lower()) > 1})
        if duplicates:
            raise ValueError(f"dictionary names must be unique: {duplicates}")
        return self


def _resolve_paths(data: dict, base_dir: Path) -> dict:
    """`[data]`'s paths relative to the config's folder (`text_source.resolve_paths`)."""
    table = data.get("data")
    if not isinstance(table, dict):
        return data
    return {**data, "data": resolve_paths(table, base_dir)}


def parse_train_config(data: dict, source: str = "config", base_dir: str | Path = ".") -> TrainConfig:
    """Validate a parsed TOML `interp train` config; a `ConfigError` lists every bad field."""
    if isinstance(data, dict):
        data = _resolve_paths(data, Path(base_dir))
    try:
        config = TrainConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source} is not a valid training config:\n{_describe(error)}") from None
    train_toml(config)  # every value must be writable to the resolved config
    return config


def load_train_config(path: str | Path, model: dict | None = None) -> TrainConfig:
    """Read and validate a TOML training config (relative paths are relative to its folder);
    `model`: `[model]` fields that replace the file's (--model, --device, --dtype)."""
    path = Path(path)
    return parse_train_config(read_toml(path, model), str(path), path.parent)


def train_toml(config: TrainConfig) -> str:
    """The resolved training config as TOML: every field, defaults included (its hash owns the run)."""
    lines = [f"checkpoint_every = {config.checkpoint_every}", f"log_every = {config.log_every}", "\n[model]"]
    lines += [_line("model", k, v) for k, v in config.model.model_dump(mode="json").items()]
    lines.append("\n[data]")
    data = config.data.model_dump(mode="json")
    unread = config.data.unread_source_fields()
    applies = {k: v for k, v in data.items() if v is not None and k not in unread}
    lines += [_line("data", k, v) for k, v in applies.items()]
    for i, table in enumerate(config.dictionary):
        lines.append("\n[[dictionary]]")
        fields = {
            **table.model_dump(mode="json", exclude=set(table.model_extra or {})),
            **table.architecture_fields(),
        }
        lines += [_line(f"dictionary.{i}", k, v) for k, v in fields.items() if v is not None]
    return "\n".join(lines) + "\n"


def _line(where: str, key: str, value) -> str:
    return f"{key} = {_toml_value(value, f'{where}.{key}')}"
