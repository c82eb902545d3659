"""What a `[task]` table may say: which task builds the prompt pairs, and its options.

Each field's description is what `interp tasks` prints.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from interp.base.schema import Strict
from interp.data.metrics import MetricKind


class PairConfig(Strict):
    """One inline pair of task 'custom'."""

    clean: str = Field(description="prompt on which the model should say `answer`")
    corrupted: str = Field(description="same-length prompt on which it should not")
    answer: str = Field(description="the correct next token (single token, usually with a leading space)")
    wrong: str = Field(description="the competing next token")
    line: str | None = Field(None, description="where the pair came from in `pairs_file` (set when read)")


class TaskConfig(Strict):
    """The `[task]` table: which task builds the pairs, how many, the metric and task options."""

    name: Literal["ioi", "induction", "docstring", "custom"] = Field(
        "ioi", description="which task builds the prompt pairs"
    )
    pairs: list[PairConfig] = Field(default_factory=list, description="inline pairs (task 'custom' only)")
    pairs_file: str | None = Field(
        None, description="task 'custom': a .jsonl or .csv file of pairs, relative to the config file"
    )
    n_pairs: int = Field(32, ge=1, le=100_000, description="number of pairs generated (ioi, induction)")
    metric: MetricKind = Field("logit_diff", description="patching metric")
    names: list[str] | None = Field(None, description="ioi: names to use (each must be one token)")
    seq_len: int = Field(10, ge=2, le=512, description="induction: length of the repeated random sequence")
    prepend_bos: bool = Field(False, description="put the tokenizer's BOS token before every prompt")

    @model_validator(mode="after")
    def _pairs_only_for_custom(self) -> TaskConfig:
        if self.name == "custom" and not self.pairs:
            raise ValueError("task 'custom' needs at least one entry in `pairs`, or a `pairs_file`")
        if self.name != "custom" and (self.pairs or self.pairs_file):
            raise ValueError(f"`pairs` and `pairs_file` are only for task 'custom', not {self.name!r}")
        return self
