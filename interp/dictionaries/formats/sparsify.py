"""eai-sparsify's directory layout (`SparseCoder.save_to_disk` / `load_from_disk`, 1.3.x), both ways.

A directory named after the Hugging Face module it hooks (`layers.16`, `layers.16.mlp`; a run with
several seeds nests `layers.16/seed0`) holds `cfg.json` (the `SparseCoderConfig` fields `activation`,
`expansion_factor`, `normalize_decoder`, `num_latents`, `k`, `multi_topk`, `skip_connection`,
`transcode`, plus `d_in`) and `sae.safetensors` with the module's state dict:

    encoder.weight [num_latents, d_in]   = our W_enc transposed
    encoder.bias   [num_latents]         = b_enc
    W_dec          [num_latents, d_in]   = W_dec (same orientation as ours)
    b_dec          [d_in]
    W_skip         [d_in, d_in]          only with skip_connection

sparsify's encoder is `topk(ReLU((x - b_dec) @ encoder.weight.T + encoder.bias))`, where `b_dec` is
subtracted only when not transcoding, and the decoder adds `b_dec` (and `x @ W_skip.T` with a skip
connection): our TopK dictionary with `apply_b_dec_to_input = not transcode`. `activation="groupmax"`
is refused by name; `multi_topk` and `normalize_decoder` only shape training and are kept in
`file_metadata`.

Hook names come from the module name (a leading `model.` is dropped): `layers.L` -> the block's output
`blocks.L.hook_resid_post` (a transcoder: from `blocks.L.hook_resid_pre`); `layers.L.mlp` ->
`blocks.L.hook_mlp_out` (a transcoder reads the MLP's input, `blocks.L.ln1.hook_out`: Phi's MLP
reads the block's one LayerNorm); `layers.L.self_attn` -> `blocks.L.hook_attn_out` (likewise);
`layers.L.input_layernorm` -> `blocks.L.ln1.hook_out`; `embed_tokens` -> `hook_embed`;
`final_layernorm` -> `ln_final.hook_out`. Other names need `hook_name=` (and `hook_name_out=`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import Tensor

from interp.base.errors import InputError
from interp.base.files import write_atomic
from interp.dictionaries.base import Dictionary
from interp.dictionaries.formats import CFG, read_cfg
from interp.dictionaries.registry import make_dictionary

WEIGHTS = "sae.safetensors"
_FIELDS = {"activation", "expansion_factor", "normalize_decoder", "num_latents", "k", "multi_topk",
           "skip_connection", "transcode", "d_in"}  # fmt: skip
_DESCRIPTIVE = {"expansion_factor", "normalize_decoder", "multi_topk"}


def hooks_for_module(module: str, transcode: bool) -> tuple[str, str | None] | None:
    """(hook read, hook written or None) for a Hugging Face Phi module name; None if unknown."""
    module = module.removeprefix("model.")
    if module == "embed_tokens" and not transcode:
        return "hook_embed", None
    if module == "final_layernorm" and not transcode:
        return "ln_final.hook_out", None
    match = re.fullmatch(r"layers\.(\d+)(?:\.(mlp|self_attn|input_layernorm))?", module)
    if match is None:
        return None
    layer, part = match.group(1), match.group(2)
    written = {
        None: f"blocks.{layer}.hook_resid_post",
        "mlp": f"blocks.{layer}.hook_mlp_out",
        "self_attn": f"blocks.{layer}.hook_attn_out",
        "input_layernorm": f"blocks.{layer}.ln1.hook_out",
    }[part]
    if not transcode:
        return written, None
    if part == "input_layernorm":
        return None
    read = f"blocks.{layer}.hook_resid_pre" if part is None else f"blocks.{layer}.ln1.hook_out"
    return read, written


def module_for_hooks(dictionary: Dictionary) -> str | None:
    """The Hugging Face module name sparsify would hook for `dictionary`'s hooks (None if none fits):
    name the directory after it so that sparsify's `load_many` and `read_sparsify` find the hook."""
    transcode = dictionary.kind != "sae"
    for module in ["embed_tokens", "final_layernorm"]:
        if hooks_for_module(module, transcode) == _pair(dictionary):
            return module
    match = re.match(r"blocks\.(\d+)\.", dictionary.hook_name_out or "")
    if match:
        for part in ("", ".mlp", ".self_attn", ".input_layernorm"):
            module = f"layers.{match.group(1)}{part}"
            if hooks_for_module(module, transcode) == _pair(dictionary):
                return module
    return None


def _pair(dictionary: Dictionary) -> tuple[str | None, str | None]:
    return (dictionary.hook_name, dictionary.hook_name_out if dictionary.kind != "sae" else None)


def write_sparsify(dictionary: Dictionary, directory: str | Path) -> Path:
    """Write a TopK dictionary in sparsify's layout (other architectures are refused by name)."""
    from safetensors.torch import save

    d, cfg = dictionary, dictionary.cfg
    directory = Path(directory)
    for path in (directory, directory / CFG, directory / WEIGHTS):
        if path.is_symlink():
            raise InputError(f"{path} is a symbolic link; dictionaries are written only to real files.")
    if cfg.architecture != "topk":
        raise InputError(f"sparsify's layout holds TopK dictionaries only; this one is {cfg.architecture!r}.")
    if cfg.rescale_acts_by_decoder_norm:
        raise InputError("sparsify has no rescale_acts_by_decoder_norm; write this one in SAELens's layout.")
    if cfg.kind == "sae" and not cfg.apply_b_dec_to_input:
        raise InputError(
            "sparsify always subtracts b_dec from an SAE's input; this SAE does not (apply_b_dec_to_input=False)."
        )
    if cfg.kind != "sae" and d.d_out != d.d_in:
        raise InputError(
            f"sparsify's transcoders write what they read (d_out = d_in); this one has d_out={d.d_out}."
        )
    tensors = {"encoder.weight": d.W_enc.T, "encoder.bias": d.b_enc, "W_dec": d.W_dec, "b_dec": d.b_dec}
    if d.W_skip is not None:
        tensors["W_skip"] = d.W_skip
    out = {
        "activation": "topk",
        "expansion_factor": max(1, d.d_sae // d.d_in),
        "normalize_decoder": True,
        "num_latents": d.d_sae,
        "k": cfg.k,
        "multi_topk": False,
        "skip_connection": d.W_skip is not None,
        "transcode": cfg.kind != "sae",
        "d_in": d.d_in,
    }
    blob = save({name: t.detach().to("cpu", torch.float32).contiguous() for name, t in tensors.items()})
    write_atomic(directory / WEIGHTS, blob)
    write_atomic(directory / CFG, json.dumps(out) + "\n")
    return directory


def read_sparsify(
    directory: str | Path, *, hook_name: str | None = None, hook_name_out: str | None = None
) -> Dictionary:
    """A TopK dictionary from a sparsify directory; hooks from its module name unless given."""
    from safetensors.torch import load_file

    directory = Path(directory)
    cfg = read_cfg(directory)
    unknown = sorted(set(cfg) - _FIELDS)
    if unknown:
        raise InputError(f"{directory / CFG} has field(s) this reader does not know: {', '.join(unknown)}.")
    if cfg.get("activation", "topk") != "topk":
        raise InputError(
            f"{directory}: sparsify activation {cfg['activation']!r} is not supported (only topk)."
        )
    weights: dict[str, Tensor] = load_file(directory / WEIGHTS)
    expected = {"encoder.weight", "encoder.bias", "W_dec", "b_dec"} | (
        {"W_skip"} if cfg.get("skip_connection") else set()
    )
    if set(weights) != expected:
        raise InputError(
            f"{directory / WEIGHTS} holds {', '.join(sorted(weights))}; a sparsify coder with this cfg has "
            f"{', '.join(sorted(expected))} (a file saved with decoder=False cannot be used to reconstruct)."
        )
    transcode = bool(cfg.get("transcode", False))
    if cfg.get("skip_connection") and not transcode:
        raise InputError(
            f"{directory}: a skip connection on an autoencoder (transcode=false) is not supported."
        )
    d_in = int(cfg["d_in"])
    d_sae = int(cfg.get("num_latents") or d_in * int(cfg.get("expansion_factor", 32)))
    if tuple(weights["encoder.weight"].shape) != (d_sae, d_in):
        raise InputError(
            f"{directory / WEIGHTS}: encoder.weight has shape {tuple(weights['encoder.weight'].shape)}; the cfg "
            f"needs (num_latents={d_sae}, d_in={d_in})."
        )
    module = directory.parent.name if re.fullmatch(r"seed\d+", directory.name) else directory.name
    found = hooks_for_module(module, transcode)
    if hook_name is None:
        if found is None:
            raise InputError(
                f"{directory}: {module!r} is not a Phi module name this reader maps to a hook (e.g. layers.16, "
                "layers.16.mlp); pass hook_name= (and hook_name_out= for a transcoder)."
            )
        hook_name = found[0]
    if transcode and hook_name_out is None:
        hook_name_out = found[1] if found is not None else None
        if hook_name_out is None:
            raise InputError(f"{directory}: pass hook_name_out= for this transcoder.")
    kind = "sae" if not transcode else ("skip_transcoder" if cfg.get("skip_connection") else "transcoder")
    dictionary = make_dictionary(
        "topk", d_in=d_in, d_sae=d_sae, k=int(cfg["k"]), kind=kind, d_out=weights["W_dec"].shape[-1],
        hook_name=hook_name, hook_name_out=hook_name_out if transcode else None,
    )  # fmt: skip
    state = {
        "W_enc": weights["encoder.weight"].T,
        "b_enc": weights["encoder.bias"],
        "W_dec": weights["W_dec"],
        "b_dec": weights["b_dec"],
    }
    if "W_skip" in weights:
        state["W_skip"] = weights["W_skip"]
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(getattr(dictionary, name).shape):
            raise InputError(
                f"{directory / WEIGHTS}: {name} has shape {tuple(tensor.shape)}, not {tuple(getattr(dictionary, name).shape)}."
            )
    dictionary.load_state_dict({name: t.to(torch.float32).contiguous() for name, t in state.items()})
    dictionary.file_metadata = {k: cfg[k] for k in _DESCRIPTIVE if k in cfg}
    dictionary.log_density = None
    dictionary.trained = True
    return dictionary.eval()
