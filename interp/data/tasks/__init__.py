"""Tasks build clean/corrupted prompt pairs for a loaded model's tokenizer.

| task | clean prompt -> answer | corrupted prompt |
| --- | --- | --- |
| `ioi` | "When Mary and John went to the store, John gave a drink to" -> " Mary" | the repeated name becomes the other one ("..., Mary gave a drink to"), so the answer flips to " John" |
| `induction` | random tokens `r`, then `r` again without its last token -> `r[-1]` | the first copy is other random tokens `r'`; wrong answer `r'[-1]` |
| `docstring` | a Python function's docstring listing its parameters -> the next parameter name | the definition's argument names replaced; wrong answer the replacement in that slot |
| `custom` | inline pairs from the config | |
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from interp.data.tasks.options import TASK_OPTIONS, TaskConfig

if TYPE_CHECKING:
    from interp.data.prompts import PromptPairs
    from interp.model.loading import HookedPhi

# each task's module, imported when used: `interp.data.tasks.options` (the config's) stays light
TASKS = {name: f"interp.data.tasks.{name}" for name in TASK_OPTIONS}


def build_pairs(task: TaskConfig, model: HookedPhi, seed: int) -> PromptPairs:
    """The task's prompt pairs under `model`'s tokenizer (validated: lengths, single tokens)."""
    return import_module(TASKS[task.name]).build(task, model, seed)


def describe_tasks() -> list[tuple[str, str]]:
    """(name, one-line description) of every task, for `interp tasks`."""
    return [(name, import_module(module).DESCRIPTION) for name, module in TASKS.items()]
