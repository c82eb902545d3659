"""interp: the Phi-2 interpretability workbench.

import interp
model = interp.load_model("toy")            # or "microsoft/phi-2", a directory, ...
pairs = interp.PromptPairs.from_strings(model.tokenizer, [...])
result = interp.sweep(model, pairs, "head_out")
"""

from interp.ablation import Component, ablate, ablation_sweep
from interp.attribution import direct_logit_attribution, logit_lens, neuron_attribution
from interp.attribution_patching import agreement, attribution_patch
from interp.cache import cache_activations
from interp.config import load_config, parse_config
from interp.errors import HookNameError, InterpError, ModelSourceError, UnsafeDtypeError
from interp.heads import head_scores, top_heads
from interp.hooks import hook_names, validate_hook_names
from interp.metrics import make_metric, normalise
from interp.model import ModelInfo, load_model
from interp.patch_hooks import Patch, run_patched
from interp.patching import PatchResult, sweep
from interp.path_patching import path_patch
from interp.prompts import PromptError, PromptPair, PromptPairs

__version__ = "0.1.0"

__all__ = [
    "Component",
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
    "ablate",
    "ablation_sweep",
    "agreement",
    "attribution_patch",
    "cache_activations",
    "direct_logit_attribution",
    "head_scores",
    "hook_names",
    "load_config",
    "load_model",
    "logit_lens",
    "make_metric",
    "neuron_attribution",
    "normalise",
    "parse_config",
    "path_patch",
    "run_patched",
    "sweep",
    "top_heads",
    "validate_hook_names",
]
