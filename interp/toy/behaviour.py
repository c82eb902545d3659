"""Measure the toy model's behaviour: IOI accuracy and logit difference on held-out splits.

`python -m interp.toy.behaviour` prints the figures the model card quotes.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from typing import Literal

import torch

from interp.data.tasks.ioi_grammar import IOIExample, sample_ioi
from interp.model.loading import HookedPhi
from interp.toy.vocab import HELD_OUT_NAMES, HELD_OUT_TEMPLATES, TRAIN_NAMES, TRAIN_TEMPLATES

Split = Literal["train", "held_out_templates", "held_out_names", "held_out_both"]
SPLITS: dict[Split, tuple[list[str], list[str]]] = {
    "train": (TRAIN_TEMPLATES, TRAIN_NAMES),
    "held_out_templates": (HELD_OUT_TEMPLATES, TRAIN_NAMES),
    "held_out_names": (TRAIN_TEMPLATES, HELD_OUT_NAMES),
    "held_out_both": (HELD_OUT_TEMPLATES, HELD_OUT_NAMES),
}


def ioi_examples(split: Split, n: int = 200, seed: int = 1) -> list[IOIExample]:
    """`n` IOI examples of one split (training or held-out frames and names)."""
    templates, names = SPLITS[split]
    rng = random.Random(seed)
    return [sample_ioi(rng, templates, names) for _ in range(n)]


@torch.no_grad()
def ioi_logit_diffs(model: HookedPhi, examples: list[IOIExample]) -> torch.Tensor:
    """logit(IO) - logit(S) at each prompt's final position (prompts grouped by token length)."""
    tokenizer = model.tokenizer
    groups: dict[int, list[int]] = defaultdict(list)
    encoded = [tokenizer(ex.prompt, add_special_tokens=False)["input_ids"] for ex in examples]
    for i, ids in enumerate(encoded):
        groups[len(ids)].append(i)
    diffs = torch.empty(len(examples))
    for indices in groups.values():
        tokens = torch.tensor([encoded[i] for i in indices], device=model.cfg.device)
        final = model(tokens)[:, -1].float()
        io = torch.tensor([_single(tokenizer, examples[i].io) for i in indices], device=final.device)
        s = torch.tensor([_single(tokenizer, examples[i].s) for i in indices], device=final.device)
        rows = torch.arange(len(indices), device=final.device)
        diffs[indices] = (final[rows, io] - final[rows, s]).cpu()
    return diffs


def _single(tokenizer, word: str) -> int:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"{word!r} is not a single token: {ids}")
    return ids[0]


def ioi_behaviour(model: HookedPhi, n: int = 200, seed: int = 1) -> dict[str, dict[str, float]]:
    """Accuracy (IO logit above S logit) and mean logit difference on every split."""
    report = {}
    for split in SPLITS:
        diffs = ioi_logit_diffs(model, ioi_examples(split, n, seed))
        report[split] = {
            "accuracy": round(float((diffs > 0).float().mean()), 4),
            "mean_logit_diff": round(float(diffs.mean()), 3),
        }
    return report


def main() -> None:
    """Print the toy model's behaviour on every split and its head scores."""
    from interp.methods.head_scores import head_scores, top_heads
    from interp.model.loading import load_model

    model = load_model("toy")
    scores = head_scores(model)
    summary = {
        "ioi": ioi_behaviour(model),
        "top_heads": {kind: top_heads(s, 3) for kind, s in scores.items()},
    }
    print(json.dumps(summary, indent=1))  # noqa: T201 - a script's output


if __name__ == "__main__":
    main()
