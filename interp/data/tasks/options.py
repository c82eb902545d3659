"""What a `[task]` table may say: which task builds the prompt pairs, and the options it reads.

Each field's description is what `interp tasks` prints. Every task reads `name`, `metric` and
`prepend_bos`; the others only the tasks in `TASK_OPTIONS` name. Setting an option the task does not
read is an error naming the task and what it reads, and the resolved config (`dump()`) holds only
what the task reads. This module imports nothing heavy (the metric names are
`interp.data.metrics.MetricKind`'s, and a test holds them equal).
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from interp.base.schema import Strict

MetricKind = Literal["logit_diff", "prob", "log_prob", "kl"]  # interp.data.metrics.MetricKind
TaskName = Literal["ioi", "induction", "docstring", "custom"]

EVERY_TASK = ("name", "metric", "prepend_bos")
TASK_OPTIONS: dict[str, tuple[str, ...]] = {
    "ioi": ("n_pairs", "names"),
    "induction": ("n_pairs", "seq_len"),
    "docstring": ("n_pairs",),
    "custom": ("pairs", "pairs_file"),
}


class PairConfig(Strict):
    """One inline pair of task 'custom'."""

    clean: str = Field(description="prompt on which the model should say `answer`")
    corrupted: str = Field(description="same-length prompt on which it should not")
    answer: str = Field(description="the correct next token (single token, usually with a leading space)")
    wrong: str = Field(description="the competing next token")
    line: str | None = Field(None, description="where the pair came from in `pairs_file` (set when read)")


class TaskConfig(Strict):
    """The `[task]` table: which task builds the pairs, how many, the metric and task options."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: TaskName = Field("ioi", description="which task builds the prompt pairs")
    pairs: list[PairConfig] = Field(default_factory=list, description="custom: inline pairs")
    pairs_file: str | None = Field(
        None, description="custom: a .jsonl or .csv file of pairs, relative to the config file"
    )
    n_pairs: int = Field(
        32, ge=1, le=100_000, description="ioi, induction, docstring: number of pairs generated"
    )
    metric: MetricKind = Field("logit_diff", description="patching metric")
    names: list[str] | None = Field(None, description="ioi: names to use (each must be one token)")
    seq_len: int = Field(10, ge=2, le=512, description="induction: length of the repeated random sequence")
    prepend_bos: bool = Field(False, description="put the tokenizer's BOS token before every prompt")

    @model_validator(mode="after")
    def _options_the_task_reads(self) -> TaskConfig:
        reads = EVERY_TASK + TASK_OPTIONS[self.name]
        unread = sorted(name for name in self.model_fields_set if name not in reads)
        if unread:
            raise ValueError(
                f"task {self.name!r} does not read {', '.join(unread)}; its options are: "
                f"{', '.join(TASK_OPTIONS[self.name] + EVERY_TASK[1:])}"
            )
        if self.name == "custom" and not self.pairs:
            raise ValueError("task 'custom' needs at least one entry in `pairs`, or a `pairs_file`")
        return self

    def dump(self) -> dict:
        """The options the task reads, defaults included (what the resolved config holds)."""
        reads = EVERY_TASK + TASK_OPTIONS[self.name]
        return self.model_dump(mode="json", include=set(reads), exclude_none=True)
