"""The options an `[[analysis]]` table may set, with a description per field (`interp tasks` prints them).

Which options apply to which kind is declared by that kind's entry in `interp.runner.registry`;
setting an option the kind does not read is an error there, not a silent no-op.
"""

from __future__ import annotations

from typing import Annotated, Literal

from annotated_types import Len
from pydantic import Field, NonNegativeInt, StringConstraints, field_validator, model_validator

from interp.base.schema import Strict
from interp.methods.ablation import Method
from interp.methods.contrastive import Direction
from interp.methods.head_scores import ScoreKind
from interp.runner.labels import LABEL_RULE, label_problem


class AnalysisOptions(Strict):
    """Every option an analysis may read; the registry says which kind reads which."""

    name: str | None = Field(None, description=f"a label for this analysis (default: the kind); {LABEL_RULE}")
    direction: Direction = Field(
        "denoising", description="patching: denoising patches clean into corrupted; noising the reverse"
    )
    method: Method = Field("mean", description="ablate_head: how to ablate")
    reference: Literal["corrupted", "shuffled"] = Field(
        "corrupted", description="ablate_head: prompts that mean/resample ablation draws from"
    )
    score: ScoreKind = Field("induction", description="head_scores: which score")
    senders: list[tuple[NonNegativeInt, NonNegativeInt]] = Field(
        default_factory=list, description="path_patch: [[layer, head], ...] (empty: every head alone)"
    )
    receivers: (
        Annotated[list[tuple[NonNegativeInt, NonNegativeInt]], Len(min_length=1)] | Literal["logits"]
    ) = Field("logits", description="path_patch: [[layer, head], ...] or 'logits'")
    receiver_input: Literal["q", "k", "v"] = Field(
        "q", description="path_patch: which input of the receivers"
    )
    steps: int = Field(
        5, ge=1, le=100, description="eap_ig, circuit_faithfulness: integration steps of EAP-IG"
    )
    variant: Literal["inputs", "activations"] = Field(
        "inputs", description="eap_ig: interpolate the input embeddings, or each node group's outputs"
    )
    edge_method: Literal["eap", "eap_ig", "edge_patch"] = Field(
        "eap_ig", description="circuit_faithfulness: how edges are scored before circuits are chosen"
    )
    mode: Literal["counterfactual", "mean", "zero"] = Field(
        "counterfactual", description="circuit_faithfulness: what edges left out of a circuit carry"
    )
    top_k: int = Field(10, ge=1, le=1000, description="rows in the report's top-k table")
    layers: list[NonNegativeInt] | None = Field(
        None,
        description="steer: layers whose residual stream is steered (default: every layer and the final residual)",
    )
    multipliers: list[float] = Field(
        default_factory=lambda: [0.5, 1.0, 2.0, 4.0],
        min_length=1,
        description="steer: multipliers of the vector",
    )
    positions: Literal["all", "prompt", "generated"] = Field(
        "all", description="steer, generate: where the intervention acts"
    )
    heads: list[tuple[NonNegativeInt, NonNegativeInt]] = Field(
        default_factory=list, description="generate: [[layer, head], ...] changed while generating"
    )
    head_source: Literal["zero", "corrupted"] = Field(
        "zero",
        description="generate: what the heads write: nothing (zero), or what they write on the pair's "
        "corrupted prompt (at the prompt's positions; generated tokens have no corrupted counterpart)",
    )
    positive: list[Annotated[str, StringConstraints(min_length=1)]] | None = Field(
        None,
        min_length=1,
        description="steer: prompts whose mean final-token residual, minus the negative prompts', is the "
        "vector (ActAdd with one of each; default: the pairs' clean - corrupted)",
    )
    negative: list[Annotated[str, StringConstraints(min_length=1)]] | None = Field(
        None, min_length=1, description="steer: the prompts subtracted (with positive)"
    )
    n_samples: int = Field(2, ge=0, le=64, description="steer, generate: prompts continued as samples")
    max_new_tokens: int = Field(12, ge=1, le=512, description="steer, generate: tokens generated per sample")

    @model_validator(mode="after")
    def _positive_with_negative(self):
        if (self.positive is None) != (self.negative is None):
            raise ValueError("steer takes both positive and negative prompts, or neither (then the pairs')")
        return self

    @model_validator(mode="after")
    def _corrupted_heads_at_prompt_positions(self):
        if self.head_source == "corrupted" and self.positions == "generated":
            raise ValueError(
                'head_source = "corrupted" patches the prompt\'s positions only (generated tokens have no '
                'corrupted counterpart); use positions = "prompt" or "all", or head_source = "zero"'
            )
        return self

    @field_validator("name")
    @classmethod
    def _a_safe_label(cls, name: str | None) -> str | None:
        if name is not None and (problem := label_problem(name)):
            raise ValueError(problem)
        return name
