"""Docstring argument completion (Heimersheim & Janiak 2023), a code task suited to Phi-2.

Clean prompt (answer " files", the next parameter of the definition):

    def port(self, load, size, files, last):
        \"\"\"oil column piece

        :param load: crime population
        :param size: unit dark
        :param

Corrupted prompt: the same text with the definition's argument names replaced by other random
names, so nothing in the prompt points to " files" any more; the wrong answer is the corrupted
definition's argument in the same slot. Clean and corrupted differ only in single-token names, so
they have the same length. Every word is checked to be a single token under the loaded tokenizer.

Meant for Phi-2, Phi-1.5 and Phi-1. The toy model also learned it (1/16 of its training rows are clean
prompts of this task, from a different random stream than `build` uses), so it runs offline too.
"""

from __future__ import annotations

import random

from interp.data.prompts import PromptPair, PromptPairs
from interp.data.tasks.ioi import check_single_tokens
from interp.data.tasks.options import TaskConfig
from interp.model.loading import HookedPhi

DESCRIPTION = "docstring argument completion (code); options: n_pairs"

ARG_NAMES = [
    "load", "size", "files", "last", "image", "date", "shape", "label", "name", "value", "data", "path",
    "user", "text", "mode", "key", "count", "index", "result", "source", "target", "url", "state", "port",
    "line", "node", "page", "item", "field", "table", "query", "token", "model", "event", "color", "width",
]  # fmt: skip
WORDS = [
    "oil", "column", "piece", "crime", "population", "unit", "dark", "river", "stone", "market", "green",
    "light", "money", "story", "heart", "field", "paper", "glass", "metal", "winter",
]  # fmt: skip
FUNCTIONS = ["port", "run", "load", "check", "parse", "build", "update", "send", "read", "write"]


def prompt_text(function: str, args: list[str], described: list[str], words: list[str]) -> str:
    """The docstring prompt for `function(self, *args)` documenting `described`, ending at `:param`."""
    lines = [f"def {function}(self, {', '.join(args)}):", '    """' + " ".join(words[:3]), ""]
    for i, arg in enumerate(described):
        lines.append(f"    :param {arg}: {words[3 + 2 * i]} {words[4 + 2 * i]}")
    lines.append("    :param")
    return "\n".join(lines)


def sample_pair(rng: random.Random) -> PromptPair:
    """One clean/corrupted pair with random names, words and function (the toy trains on clean ones)."""
    args = rng.sample(ARG_NAMES, 8)
    clean_args, corrupted_args = args[:4], args[4:]
    words = rng.sample(WORDS, 7)
    function = rng.choice(FUNCTIONS)
    clean = prompt_text(function, clean_args, clean_args[:2], words)
    corrupted = prompt_text(function, corrupted_args, clean_args[:2], words)
    return PromptPair(clean, corrupted, " " + clean_args[2], " " + corrupted_args[2])


def build(task: TaskConfig, model: HookedPhi, seed: int) -> PromptPairs:
    """`task.n_pairs` docstring pairs (argument names checked to be single tokens)."""
    check_single_tokens(model.tokenizer, ARG_NAMES, "argument names")
    rng = random.Random(seed + 1000)  # a different stream from the toy's training data (seed 0)
    pairs = [sample_pair(rng) for _ in range(task.n_pairs)]
    return PromptPairs.from_strings(model.tokenizer, pairs, prepend_bos=task.prepend_bos)
