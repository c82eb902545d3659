"""interp: the Phi-2 interpretability workbench.

import interp
model = interp.load_model("toy")            # or "microsoft/phi-2", a directory, ...
pairs = interp.PromptPairs.from_strings(model.tokenizer, [...])
result = interp.sweep(model, pairs, "head_out")
"""

from interp.attribution_patching import agreement, attribution_patch
from interp.cache import cache_activations
from interp.errors import HookNameError, InterpError, ModelSourceError, UnsafeDtypeError
from interp.heads import head_scores, top_heads
from interp.hooks import hook_names, validate_hook_names
from interp.metrics import make_metric, normalise
from interp.model import ModelInfo, load_model
from interp.patch_hooks import Patch, run_patched
from interp.patching import PatchResult, sweep
from interp.prompts import PromptError, PromptPair, PromptPairs

__version__ = "0.1.0"

__all__ = [
    "HookNameError",
    "InterpError",
    "ModelInfo",
    "ModelSourceError",
    "Patch",
    "PatchResult",
    "PromptError",
    "PromptPair",
    "PromptPairs",
    "UnsafeDtypeError",
    "agreement",
    "attribution_patch",
    "cache_activations",
    "head_scores",
    "hook_names",
    "load_model",
    "make_metric",
    "normalise",
    "run_patched",
    "sweep",
    "top_heads",
    "validate_hook_names",
]
