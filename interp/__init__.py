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
    dictionaries/  sparse dictionaries (SAEs, transcoders): architectures, training, formats, evaluation
    methods/   the contrastive core and one file per method
    viz/       plotly figures and attention widgets
    report/    self-contained HTML reports (from results.json)
    runner/    experiment configs, the analysis registry, workers, run directories, backends
    cli.py     the `interp` command
    toy/       the trained toy model (its trainer uses data/; only tests and `interp train`, for the
               toy's corpus, import toy/)
"""

from __future__ import annotations

from importlib import import_module

# every public name and the module that defines it; imported when first used, so that `interp --help`
# and config validation start without loading torch
_PUBLIC: dict[str, tuple[str, ...]] = {
    "interp.base.errors": ("HookNameError", "InterpError", "ModelSourceError", "UnsafeDtypeError"),
    "interp.base.version": ("__version__",),
    "interp.data.metrics": ("make_metric", "normalise"),
    "interp.data.prompts": ("PromptError", "PromptPair", "PromptPairs"),
    "interp.dictionaries": (
        "Dictionary",
        "evaluate_dictionary",
        "evaluate_on_model",
        "load_dictionary",
        "save_dictionary",
        "train_dictionary",
        "train_from_model",
    ),
    "interp.dictionaries.splice": ("Spliced", "splice"),
    "interp.dictionaries.cards": ("FeatureCard", "feature_cards"),
    "interp.dictionaries.feature_stats": ("feature_stats",),
    "interp.methods.ablation": ("Component", "ablate", "ablation_sweep", "head_ablations"),
    "interp.methods.activation_patching": ("sweep",),
    "interp.methods.attribution_patching": ("agreement", "attribution_patch"),
    "interp.methods.circuits.circuit": (
        "FaithfulnessCurve",
        "evaluate_circuit",
        "faithfulness_curve",
        "load_circuit",
        "save_circuit",
        "select",
    ),
    "interp.methods.circuits.edge_attribution": ("eap", "eap_ig"),
    "interp.methods.circuits.edge_patching": ("edge_patch",),
    "interp.methods.circuits.graph": ("Circuit", "Graph"),
    "interp.methods.circuits.scores": ("EdgeScores",),
    "interp.methods.contrastive": ("Contrast", "contrast"),
    "interp.methods.direct_logit_attribution": ("direct_logit_attribution", "neuron_attribution"),
    "interp.methods.features.attribution": ("feature_attribution",),
    "interp.methods.features.circuits": ("FeatureCircuit", "feature_circuit"),
    "interp.methods.features.circuit_evaluation": ("feature_faithfulness", "patch_feature_edge"),
    "interp.methods.features.evaluation": ("evaluate_dictionaries",),
    "interp.methods.features.interventions": ("FeatureSteer", "LatentPatch"),
    "interp.methods.features.patching": ("patch_latents",),
    "interp.methods.features.validation": ("AttributionCheck", "check_feature_attribution"),
    "interp.methods.graphs.attribution": ("AttributionGraph", "attribution_graph"),
    "interp.methods.graphs.graph_json": ("read_graph_json", "write_graph_json"),
    "interp.methods.graphs.interventions": ("check_intervention",),
    "interp.methods.graphs.pruning": ("graph_scores", "prune_graph"),
    "interp.methods.graphs.replacement": ("Intervention", "replacement_model"),
    "interp.methods.generation": ("Generation", "generate"),
    "interp.methods.head_scores": ("head_scores", "top_heads"),
    "interp.methods.interventions": ("Ablate", "AblateHeads", "Hook", "Patch", "Steer"),
    "interp.methods.hooked_run": ("run_with_interventions",),
    "interp.methods.joint_patching": ("run_patched",),
    "interp.methods.logit_lens": ("logit_lens",),
    "interp.methods.path_patching": ("path_patch",),
    "interp.methods.representations.das": ("DASResult", "das_steer", "fit_das"),
    "interp.methods.representations.probes": ("ProbeResult", "probe_layers"),
    "interp.methods.representations.sparse_probes": ("SparseProbeCurve", "sparse_probe"),
    "interp.methods.result": ("EffectResult", "PatchResult", "importance"),
    "interp.methods.steering": ("SteeringVector", "projection", "steer_sweep", "steering_vector"),
    "interp.model.cache": ("cache_activations",),
    "interp.model.hooks": ("hook_names", "validate_hook_names"),
    "interp.model.loading": ("HookedPhi", "ModelInfo", "load_model"),
    "interp.runner.config": ("load_config", "parse_config"),
    "interp.runner.subspaces": ("load_subspace",),
    "interp.viz.features": ("FeatureBrowser",),
    "interp.viz.graph_view": ("GraphView",),
}
_MODULE_OF = {name: module for module, names in _PUBLIC.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name in _MODULE_OF:
        value = getattr(import_module(_MODULE_OF[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    try:  # a subpackage, as after an eager `import interp.methods`
        return import_module(f"{__name__}.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module 'interp' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
