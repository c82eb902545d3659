"""interp: the Phi-2 interpretability workbench.

import interp
model = interp.load_model("toy")            # or "microsoft/phi-2", a directory, ...
pairs = interp.PromptPairs.from_strings(model.tokenizer, [...])
result = interp.sweep(model, pairs, "head_out")
result.top(5)                                # components ranked by effect

The package is layered; each layer imports only from the ones above it in this list:

    base/      errors, dimension names, atomic files, HTML escaping, terminal output
    model/     loading Phi as a hooked model, sources, folding, hook names, caching
    engine/    the functional Phi forward and the batched patch engine
    data/      prompt pairs, metrics, token helpers, tasks
    methods/   the contrastive core and one file per method
    viz/       plotly figures and attention widgets
    report/    self-contained HTML reports (from results.json)
    runner/    experiment configs, the analysis registry, workers, run directories, backends
    cli.py     the `interp` command
    toy/       the trained toy model (its trainer uses data/; nothing but tests imports toy/)
"""

from interp.base.errors import HookNameError, InterpError, ModelSourceError, UnsafeDtypeError
from interp.base.version import __version__ as __version__
from interp.data.metrics import make_metric, normalise
from interp.data.prompts import PromptError, PromptPair, PromptPairs
from interp.methods.ablation import Component, ablate, ablation_sweep
from interp.methods.activation_patching import sweep
from interp.methods.attribution_patching import agreement, attribution_patch
from interp.methods.circuits.circuit import (
    FaithfulnessCurve,
    evaluate_circuit,
    faithfulness_curve,
    load_circuit,
    save_circuit,
    select,
)
from interp.methods.circuits.edge_attribution import eap, eap_ig
from interp.methods.circuits.edge_patching import edge_patch
from interp.methods.circuits.graph import Circuit, Graph
from interp.methods.circuits.scores import EdgeScores
from interp.methods.contrastive import Contrast, contrast
from interp.methods.direct_logit_attribution import direct_logit_attribution, neuron_attribution
from interp.methods.generation import Generation, generate
from interp.methods.head_scores import head_scores, top_heads
from interp.methods.interventions import AblateHeads, Hook, PatchFrom, Steer
from interp.methods.joint_patching import Patch, run_patched
from interp.methods.logit_lens import logit_lens
from interp.methods.path_patching import path_patch
from interp.methods.result import EffectResult, PatchResult, importance
from interp.methods.steering import SteeringVector, projection, steer_sweep, steering_vector
from interp.model.cache import cache_activations
from interp.model.hooks import hook_names, validate_hook_names
from interp.model.loading import HookedPhi, ModelInfo, load_model
from interp.runner.config import load_config, parse_config

__all__ = [
    # edge-level circuits
    "Circuit",
    "EdgeScores",
    "FaithfulnessCurve",
    "Graph",
    "eap",
    "eap_ig",
    "edge_patch",
    "evaluate_circuit",
    "faithfulness_curve",
    "importance",
    "load_circuit",
    "save_circuit",
    "select",
    # the rest
    "AblateHeads",
    "Generation",
    "Hook",
    "PatchFrom",
    "Steer",
    "SteeringVector",
    "generate",
    "projection",
    "steer_sweep",
    "steering_vector",
    "Component",
    "Contrast",
    "EffectResult",
    "HookNameError",
    "HookedPhi",
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
    "contrast",
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
