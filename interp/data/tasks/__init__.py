"""Tasks build clean/corrupted prompt pairs for a loaded model's tokenizer.

| task | clean prompt -> answer | corrupted prompt |
| --- | --- | --- |
| `ioi` | "When Mary and John went to the store, John gave a drink to" -> " Mary" | the repeated name becomes the other one ("..., Mary gave a drink to"), so the answer flips to " John" |
| `induction` | random tokens `r`, then `r` again without its last token -> `r[-1]` | the first copy is other random tokens `r'`; wrong answer `r'[-1]` |
| `docstring` | a Python function's docstring listing its parameters -> the next parameter name | the definition's argument names replaced; wrong answer the replacement in that slot |
| `custom` | inline pairs from the config | |
"""

from __future__ import annotations

from interp.data.prompts import PromptPairs
from interp.data.tasks import custom, docstring, induction, ioi
from interp.data.tasks.options import TaskConfig
from interp.model.loading import HookedPhi

TASKS = {"ioi": ioi, "induction": induction, "docstring": docstring, "custom": custom}


def build_pairs(task: TaskConfig, model: HookedPhi, seed: int) -> PromptPairs:
    """The task's prompt pairs under `model`'s tokenizer (validated: lengths, single tokens)."""
    return TASKS[task.name].build(task, model, seed)


def describe_tasks() -> list[tuple[str, str]]:
    """(name, one-line description) of every task, for `interp tasks`."""
    return [(name, module.DESCRIPTION) for name, module in TASKS.items()]
