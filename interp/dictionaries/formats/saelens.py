"""SAELens's directory layout, both ways: `cfg.json`, `sae_weights.safetensors`, `sparsity.safetensors`.

Weights are SAELens's names and shapes (`W_enc [d_in, d_sae]`, `b_enc`, `W_dec [d_sae, d_out]`,
`b_dec`, `threshold [d_sae]` for JumpReLU, `W_skip [d_out, d_in]` for skip transcoders), which are
also ours, so weights map one to one. `sparsity.safetensors` holds `sparsity`: log10 of each
latent's firing frequency (SAELens's trainer writes `log10(density + 1e-10)`).

Writing: the cfg is in SAELens 6.x's shape (hooks nested under `metadata`, with a
`sae_lens_version` of 6.0.0 so SAELens's loader reads it as 6.x rather than converting it as an
old file). Architectures: relu -> `standard` / `transcoder` / `skip_transcoder`; topk -> `topk`;
jumprelu and batchtopk (SAELens stores a trained BatchTopK as JumpReLU, one threshold for every
latent) -> `jumprelu` / `jumprelu_transcoder` / `jumprelu_skip_transcoder`. SAELens has no TopK
transcoder: those are written as `topk_transcoder` / `topk_skip_transcoder`, which SAELens refuses
loudly rather than reading them as something else. Our own config rides along in
`metadata.interp`, so a file written here loads back as the same architecture.

Reading: SAELens 6.x cfgs (`metadata.hook_name`, `metadata.hook_name_out`) and older ones (top-level
`hook_name` / `hook_point`, `activation_fn` with `activation_fn_kwargs.k` for TopK). Fields that
change what the dictionary computes are honoured (`apply_b_dec_to_input`,
`rescale_acts_by_decoder_norm`, `k`, `d_out`) or refused by name where they are not implemented
(`normalize_activations` other than none, `reshape_activations: hook_z`, `hook_head_index`,
`finetuning_scaling_factor`); descriptive fields (model, dataset, training hyperparameters) are kept
in `dictionary.file_metadata`; any other field is an error naming it (pass `ignore_fields=` to
accept it knowingly).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.base.errors import InputError
from interp.base.files import write_atomic
from interp.dictionaries.base import Dictionary
from interp.dictionaries.formats import CFG, read_cfg
from interp.dictionaries.registry import make_dictionary

WEIGHTS, SPARSITY = "sae_weights.safetensors", "sparsity.safetensors"
LAYOUT_VERSION = "6.0.0"

_WRITE_NAMES = {
    ("relu", "sae"): "standard",
    ("relu", "transcoder"): "transcoder",
    ("relu", "skip_transcoder"): "skip_transcoder",
    ("topk", "sae"): "topk",
    ("topk", "transcoder"): "topk_transcoder",
    ("topk", "skip_transcoder"): "topk_skip_transcoder",
    ("jumprelu", "sae"): "jumprelu",
    ("jumprelu", "transcoder"): "jumprelu_transcoder",
    ("jumprelu", "skip_transcoder"): "jumprelu_skip_transcoder",
}
_WRITE_NAMES |= {
    ("batchtopk", kind): _WRITE_NAMES[("jumprelu", kind)] for kind in ("sae", "transcoder", "skip_transcoder")
}
_READ_NAMES = {name: key for key, name in _WRITE_NAMES.items() if key[0] != "batchtopk"}

# fields that describe where a dictionary came from or how it was trained, not what it computes
_DESCRIPTIVE = {
    # SAELens's metadata keys (LLM_METADATA_KEYS) and versions
    "model_name", "model_class_name", "model_from_pretrained_kwargs", "prepend_bos", "exclude_special_tokens",
    "neuronpedia_id", "context_size", "seqpos_slice", "dataset_path", "sae_lens_version",
    "sae_lens_training_version", "hook_layer", "hook_point_layer", "hf_hook_name", "hf_hook_name_out",
    "dataset_trust_remote_code", "device", "dtype", "hook_head_index_out", "training_architecture",
    "training_architecture_details",
    # training configs written into cfg.json by SAELens's trainers (6.x and older runner configs)
    "l1_coefficient", "lp_norm", "l1_warm_up_steps", "decoder_init_norm", "jumprelu_init_threshold",
    "jumprelu_bandwidth", "jumprelu_sparsity_loss_mode", "l0_coefficient", "l0_warm_up_steps",
    "pre_act_loss_coefficient", "jumprelu_tanh_scale", "aux_loss_coefficient", "use_sparse_activations",
    "topk_threshold_lr", "lr", "lr_scheduler_name", "lr_warm_up_steps", "lr_end", "lr_decay_steps",
    "n_restart_cycles", "train_batch_size_tokens", "train_batch_size", "training_tokens", "total_training_tokens",
    "finetuning_tokens", "finetuning_method", "store_batch_size", "store_batch_size_prompts",
    "n_batches_in_buffer", "dead_feature_window", "feature_sampling_window", "dead_feature_threshold",
    "expansion_factor", "b_dec_init_method", "use_ghost_grads", "mse_loss_normalization",
    "scale_sparsity_penalty_by_decoder_norm", "decoder_orthogonal_init", "decoder_heuristic_init",
    "init_encoder_as_decoder_transpose", "noise_scale", "seed", "streaming", "is_dataset_tokenized",
    "use_cached_activations", "cached_activations_path", "from_pretrained_path", "autocast", "autocast_lm",
    "compile_llm", "llm_compilation_mode", "compile_sae", "sae_compilation_mode", "adam_beta1", "adam_beta2",
    "log_to_wandb", "wandb_project", "wandb_entity", "wandb_id", "wandb_log_frequency", "run_name",
    "eval_every_n_wandb_logs", "n_checkpoints", "checkpoint_path", "act_store_device", "tokens_per_buffer",
    "n_eval_batches", "eval_batch_size_prompts", "verbose", "model_kwargs", "hook_eval", "normalize_sae_decoder",
}  # fmt: skip
_STRUCTURAL = {
    "architecture", "d_in", "d_sae", "d_out", "k", "hook_name", "hook_point", "hook_name_out", "metadata",
    "apply_b_dec_to_input", "normalize_activations", "reshape_activations", "hook_head_index",
    "hook_point_head_index", "finetuning_scaling_factor", "rescale_acts_by_decoder_norm", "activation_fn",
    "activation_fn_str", "activation_fn_kwargs",
}  # fmt: skip


def _safe_target(directory: Path) -> None:
    for path in [directory, *(directory / name for name in (CFG, WEIGHTS, SPARSITY))]:
        if path.is_symlink():
            raise InputError(f"{path} is a symbolic link; dictionaries are written only to real files.")


def _tensor_bytes(tensors: dict[str, Tensor]) -> bytes:
    from safetensors.torch import save

    return save({name: t.detach().to("cpu", torch.float32).contiguous() for name, t in tensors.items()})


def write_saelens(
    dictionary: Dictionary,
    directory: str | Path,
    *,
    log_density: Float[Tensor, " d_sae"] | None = None,
    model_name: str | None = None,
) -> Path:
    """Write `dictionary` in SAELens's layout into `directory` (created); returns the directory."""
    directory = Path(directory)
    _safe_target(directory)
    d, cfg = dictionary, dictionary.cfg
    if cfg.architecture not in {a for a, _ in _WRITE_NAMES}:
        raise InputError(f"SAELens's layout has no architecture for {cfg.architecture!r}.")
    metadata: dict[str, Any] = {
        "sae_lens_version": LAYOUT_VERSION,
        "sae_lens_training_version": LAYOUT_VERSION,
        "hook_name": cfg.hook_name,
        "hook_head_index": None,
        "interp": cfg.to_dict(),
    }
    if cfg.kind != "sae":
        metadata["hook_name_out"] = cfg.hook_name_out
    if model_name is not None:
        metadata["model_name"] = model_name
    out: dict[str, Any] = {
        "architecture": _WRITE_NAMES[(cfg.architecture, cfg.kind)],
        "d_in": d.d_in,
        "d_sae": d.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": bool(cfg.apply_b_dec_to_input),
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": metadata,
    }
    if cfg.kind != "sae":
        out["d_out"] = d.d_out
    if cfg.architecture == "topk":
        out["k"] = cfg.k
        out["rescale_acts_by_decoder_norm"] = cfg.rescale_acts_by_decoder_norm
    tensors = {"W_enc": d.W_enc, "b_enc": d.b_enc, "W_dec": d.W_dec, "b_dec": d.b_dec}
    if cfg.architecture in ("jumprelu", "batchtopk"):
        tensors["threshold"] = d.threshold
    if d.W_skip is not None:
        tensors["W_skip"] = d.W_skip
    write_atomic(directory / WEIGHTS, _tensor_bytes(tensors))
    if log_density is not None:
        if log_density.shape != (d.d_sae,):
            raise InputError(f"log_density has shape {tuple(log_density.shape)}; expected ({d.d_sae},).")
        write_atomic(directory / SPARSITY, _tensor_bytes({"sparsity": log_density}))
    write_atomic(directory / CFG, json.dumps(out, indent=2) + "\n")
    return directory


def _flatten(cfg: dict) -> dict[str, Any]:
    """One flat dict of fields: 6.x's `metadata` merged in, old names renamed."""
    if not isinstance(cfg, dict):
        raise InputError(f"{CFG} must hold a JSON object, not {type(cfg).__name__}.")
    flat = {k: v for k, v in cfg.items() if k != "metadata"}
    metadata = cfg.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InputError(f"{CFG}: metadata must be an object.")
    for key, value in metadata.items():
        if key in flat and flat[key] != value and key not in ("device", "dtype"):
            raise InputError(
                f"{CFG} gives {key!r} twice, differently: {flat[key]!r} and metadata's {value!r}."
            )
        flat[key] = value
    renames = {
        "hook_point": "hook_name",
        "hook_point_head_index": "hook_head_index",
        "activation_fn_str": "activation_fn",
    }
    for old, new in renames.items():
        if old in flat:
            value = flat.pop(old)
            if flat.get(new, value) != value:
                raise InputError(f"{CFG} gives both {old!r} and {new!r}, differently.")
            flat[new] = value
    return flat


def _refuse_unimplemented(flat: dict, path: Path) -> None:
    normalize = flat.get("normalize_activations", "none")
    if normalize not in (None, False, "none"):
        raise InputError(
            f"{path}: normalize_activations={normalize!r} is not supported (only 'none'): the input would "
            "need a normalisation whose statistics the file does not hold (SAELens sets it to 'none' once "
            "a scaling factor is folded into the weights)."
        )
    if flat.get("reshape_activations", "none") not in (None, "none"):
        raise InputError(
            f"{path}: reshape_activations={flat['reshape_activations']!r} (per-head hook_z SAEs) is not supported."
        )
    if flat.get("hook_head_index") is not None:
        raise InputError(
            f"{path}: hook_head_index={flat['hook_head_index']!r} (an SAE on one head) is not supported."
        )
    if flat.get("finetuning_scaling_factor"):
        raise InputError(
            f"{path}: finetuning_scaling_factor=true is not supported (fold the scaling factor first)."
        )


def _architecture(flat: dict, path: Path) -> tuple[str, str]:
    """(our architecture, kind) for SAELens's architecture name (and an old file's activation_fn)."""
    name = flat.get("architecture", "standard")
    activation = flat.get("activation_fn", "relu")
    if name == "standard" and activation == "topk":
        name = "topk"
    elif name == "standard" and activation not in (None, "relu"):
        raise InputError(f"{path}: activation_fn={activation!r} is not supported; known: relu, topk.")
    if name not in _READ_NAMES:
        raise InputError(
            f"{path}: SAELens architecture {name!r} is not supported; known: {', '.join(sorted(_READ_NAMES))}."
            + (
                " (a BatchTopK training checkpoint: save its inference form, a jumprelu)"
                if name == "batchtopk"
                else ""
            )
        )
    return _READ_NAMES[name]


def read_saelens(
    directory: str | Path,
    *,
    hook_name: str | None = None,
    hook_name_out: str | None = None,
    ignore_fields: tuple[str, ...] = (),
) -> Dictionary:
    """A dictionary from a SAELens directory; see the module docstring for what is read and refused."""
    from safetensors.torch import load_file

    directory = Path(directory)
    cfg = read_cfg(directory)
    flat = _flatten(cfg)
    unknown = sorted(set(flat) - _DESCRIPTIVE - _STRUCTURAL - {"interp"} - set(ignore_fields))
    if unknown:
        raise InputError(
            f"{directory / CFG} has field(s) this reader does not know: {', '.join(unknown)}. They may change "
            "what the dictionary computes; pass ignore_fields=(...) to load it anyway."
        )
    _refuse_unimplemented(flat, directory)
    weights = load_file(directory / WEIGHTS)
    if "scaling_factor" in weights:
        if not torch.all(weights["scaling_factor"] == 1):
            raise InputError(
                f"{directory / WEIGHTS} has a scaling_factor other than 1, which is not supported."
            )
        del weights["scaling_factor"]
    hooks = _hooks(flat, hook_name, hook_name_out, directory)
    if isinstance(flat.get("interp"), dict):
        fields = dict(flat["interp"])
        architecture = fields.pop("architecture")
        fields.update(hooks)
        _check_agrees(flat, architecture, fields, directory)
    else:
        architecture, kind = _architecture(flat, directory)
        fields = {"d_in": flat.get("d_in"), "d_sae": flat.get("d_sae"), "kind": kind, **hooks}
        if kind != "sae":
            fields["d_out"] = flat.get("d_out", weights["W_dec"].shape[-1] if "W_dec" in weights else None)
        if "apply_b_dec_to_input" in flat:
            fields["apply_b_dec_to_input"] = bool(flat["apply_b_dec_to_input"])
        if architecture == "topk":
            k = flat.get("k", (flat.get("activation_fn_kwargs") or {}).get("k"))
            fields["k"] = int(k) if isinstance(k, int | float) and int(k) == k else k
            fields["rescale_acts_by_decoder_norm"] = bool(flat.get("rescale_acts_by_decoder_norm", False))
        elif flat.get("rescale_acts_by_decoder_norm"):
            raise InputError(
                f"{directory}: rescale_acts_by_decoder_norm is a TopK field; this is a {architecture}."
            )
    dictionary = make_dictionary(architecture, **fields)
    _load_weights(dictionary, weights, directory / WEIGHTS)
    dictionary.file_metadata = {k: v for k, v in flat.items() if k in _DESCRIPTIVE or k in ignore_fields}
    sparsity = directory / SPARSITY
    dictionary.log_density = load_file(sparsity)["sparsity"].float() if sparsity.is_file() else None
    dictionary.trained = True
    return dictionary.eval()


def _check_agrees(flat: dict, architecture: str, fields: dict, path: Path) -> None:
    """Our config in `metadata.interp` must still say what SAELens's fields say (a tool that edits
    the SAELens fields and keeps the metadata would otherwise be silently overruled)."""
    kind = fields.get("kind", "sae")
    saelens_says = {
        "architecture": _WRITE_NAMES.get((architecture, kind)),
        "d_in": fields.get("d_in"),
        "d_sae": fields.get("d_sae"),
        "apply_b_dec_to_input": fields.get("apply_b_dec_to_input", kind == "sae"),
    }
    if architecture == "topk":
        saelens_says["k"] = fields.get("k")
        saelens_says["rescale_acts_by_decoder_norm"] = fields.get("rescale_acts_by_decoder_norm", False)
    if kind != "sae":
        saelens_says["d_out"] = fields.get("d_out") or fields.get("d_in")
    differ = [
        f"{key}: {flat.get(key)!r} vs {value!r}"
        for key, value in saelens_says.items()
        if flat.get(key) != value
    ]
    if differ:
        raise InputError(
            f"{path / CFG}: the SAELens fields and metadata.interp disagree ({'; '.join(differ)}); remove "
            "metadata.interp to read the file by its SAELens fields."
        )


def _hooks(flat: dict, hook_name: str | None, hook_name_out: str | None, path: Path) -> dict[str, str | None]:
    hooks = {}
    for key, given in (("hook_name", hook_name), ("hook_name_out", hook_name_out)):
        stored = flat.get(key)
        if given is not None and stored is not None and given != stored:
            raise InputError(f"{path} was trained on {key}={stored!r}, not {given!r}.")
        hooks[key] = given if given is not None else stored
    return hooks


def _load_weights(dictionary: Dictionary, weights: dict[str, Tensor], path: Path) -> None:
    expected = dict(dictionary.state_dict())
    missing, extra = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    if missing or extra:
        raise InputError(
            f"{path}: tensors {', '.join(sorted(weights))} do not make a {dictionary.architecture} {dictionary.kind}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unexpected {', '.join(extra)}" if extra else "")
            + "."
        )
    for name, tensor in weights.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise InputError(
                f"{path}: {name} has shape {tuple(tensor.shape)}; the cfg's sizes need {tuple(expected[name].shape)}."
            )
    dictionary.load_state_dict({name: t.to(torch.float32) for name, t in weights.items()})
