"""The options an `[[analysis]]` table may set, with a description per field (`interp tasks` prints them).

Which options apply to which kind is declared by that kind's entry in `interp.runner.registry`;
setting an option the kind does not read is an error there, not a silent no-op.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from interp.base.schema import Strict
from interp.methods.ablation import Method
from interp.methods.contrastive import Direction
from interp.methods.head_scores import ScoreKind


class AnalysisOptions(Strict):
    """Every option an analysis may read; the registry says which kind reads which."""

    name: str | None = Field(None, description="a label for this analysis (default: the kind)")
    direction: Direction = Field(
        "denoising", description="patching: denoising patches clean into corrupted; noising the reverse"
    )
    method: Method = Field("mean", description="ablate_head: how to ablate")
    reference: Literal["corrupted", "shuffled"] = Field(
        "corrupted", description="ablate_head: prompts that mean/resample ablation draws from"
    )
    score: ScoreKind = Field("induction", description="head_scores: which score")
    senders: list[tuple[int, int]] = Field(
        default_factory=list, description="path_patch: [[layer, head], ...] (empty: every head alone)"
    )
    receivers: list[tuple[int, int]] | Literal["logits"] = Field(
        "logits", description="path_patch: [[layer, head], ...] or 'logits'"
    )
    receiver_input: Literal["q", "k", "v"] = Field(
        "q", description="path_patch: which input of the receivers"
    )
    top_k: int = Field(10, ge=1, le=1000, description="rows in the report's top-k table")
