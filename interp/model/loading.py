"""`load_model`: Phi-2 (or Phi-1.5, Phi-1, the toy model) as a TransformerLens hooked model.

This is the only module that talks to TransformerLens's loading API. The Hugging Face model is
loaded first (memory-mapped safetensors, one copy of the weights), optionally folded in place
(`interp.model.folding`), then wrapped in a `TransformerBridge`, which leaves the weights where they are.

Two weight modes:

- `weights="raw"`: Hugging Face's exact numerics; logits equal `PhiForCausalLM`'s.
- `weights="folded"`: LayerNorms folded, writing weights and unembedding centred, value biases
  folded (TransformerLens's compatibility-mode processing). Log-probabilities are unchanged;
  the residual stream has no mean component, which makes direct logit attribution cleaner.

Hooks are the bridge's: `blocks.{L}.hook_resid_pre`, `blocks.{L}.attn.hook_z`, ... Phi runs
attention and MLP in parallel from one LayerNorm, so there is no `resid_mid`.

Three things the bridge (transformer-lens 4.3 with transformers 5) gets wrong for Phi are mended
here, after wrapping, each checked by tests/test_loading.py:

- the key/value cache: transformers 5 passes it to attention as `cache=`, the bridge's attention
  reads only `past_key_values=` / `layer_past=`, so every cached decoding step attended to itself
  alone (`model.generate` and even `model.original_model.generate` repeated one token);
- the tokenizer: the bridge reloads it with `add_bos_token=True`, so `model.tokenizer(text)`
  prepended `<|endoftext|>` while `model.to_tokens` stripped it again; Phi-2's own tokenizer adds
  no BOS, and now no entry point does;
- the config: `rotary_dim`, `attn_scale`, `n_params`, ... were left at their defaults; they are
  filled as TransformerLens's `HookedTransformerConfig` filled them for Phi.

And float16 is refused after loading too (`model.half()`, `model.to(torch.float16)`), for the
reason `load_model` refuses it (FP16_EXPLANATION).
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch

from interp.base.errors import InputError, ModelSourceError, UnsafeDtypeError
from interp.model.folding import fold_phi_weights
from interp.model.sources import ResolvedSource, load_tokenizer, resolve_source

Weights = Literal["raw", "folded"]

_DTYPE_NAMES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}

FP16_EXPLANATION = (
    "float16 is refused for Phi models: Phi-2's attention scores and residual stream exceed "
    "float16's range (max 65504) and overflow to inf/NaN, and TransformerLens replaces NaN "
    "attention with zeros without a warning, so every result would be silently wrong. Use "
    "dtype='bfloat16' on a GPU (same memory as float16, float32's range) or dtype='float32'."
)


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded, attached to the model as `model.interp_info`."""

    source: str
    kind: Literal["toy", "local", "hub"]
    path: str
    weights: Weights
    dtype: str
    device: str
    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    d_vocab: int
    rotary_dim: int


@runtime_checkable
class HookedPhi(Protocol):
    """What every `interp` function needs of a model: what `load_model` returns.

    That is a TransformerLens `TransformerBridge` around a Hugging Face `PhiForCausalLM`, with
    `interp_info` attached. The protocol is checked at run time (the test suite runs beartype on
    every annotated function), so passing e.g. a bare `PhiForCausalLM` fails at the call with the
    parameter's name, not deep inside a method. It is a protocol rather than the bridge class so
    that `import interp` does not import TransformerLens.
    """

    cfg: Any  # TransformerLens config: n_layers, n_heads, d_model, d_head, d_mlp, d_vocab, n_ctx, device
    tokenizer: Any
    original_model: Any  # the wrapped PhiForCausalLM
    hook_dict: dict
    interp_info: ModelInfo

    def hooks(self, *args: Any, **kwargs: Any) -> Any: ...

    def run_with_cache(self, *args: Any, **kwargs: Any) -> Any: ...


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; a device this machine lacks is an error naming what it has."""
    if str(device) != "auto":
        try:
            resolved = torch.device(device)
        except (RuntimeError, TypeError):
            raise InputError(
                f"device {device!r} is not a torch device; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
            ) from None
        if resolved.type == "cuda" and (
            not torch.cuda.is_available() or (resolved.index or 0) >= torch.cuda.device_count()
        ):
            have = torch.cuda.device_count() if torch.cuda.is_available() else 0
            raise InputError(f"device {device!r}: this machine has {have} CUDA devices; use 'auto' or 'cpu'.")
        if resolved.type == "mps" and not (
            getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        ):
            raise InputError(f"device {device!r}: MPS is not available on this machine; use 'auto' or 'cpu'.")
        return resolved
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """`auto` is bfloat16 on CUDA and float32 elsewhere; float16 is refused (see FP16_EXPLANATION)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    resolved = _DTYPE_NAMES.get(dtype) if isinstance(dtype, str) else dtype
    if resolved is None or resolved not in (torch.float32, torch.bfloat16, torch.float16):
        raise InputError(f"dtype {dtype!r} is not allowed; use 'auto', 'float32' or 'bfloat16'.")
    if resolved == torch.float16:
        raise UnsafeDtypeError(FP16_EXPLANATION)
    return resolved


def load_model(
    source: str | os.PathLike = "toy",
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    weights: Weights = "raw",
    attn_result: bool = False,
) -> HookedPhi:
    """Load a Phi model as a TransformerLens `TransformerBridge`.

    Args:
        source: `"toy"`, a hub id (`"microsoft/phi-2"`, `"microsoft/phi-1_5"`, `"microsoft/phi-1"`),
            an alias (`"phi-2"`, `"phi-1_5"`, `"phi-1"`), or a local directory with a saved
            `PhiForCausalLM` and its tokenizer. Hub ids load from the Hugging Face cache when
            present (also with `HF_HUB_OFFLINE=1`) and download otherwise.
        device: `"auto"` (cuda, then mps, then cpu) or any torch device.
        dtype: `"auto"` (bfloat16 on CUDA, float32 elsewhere), `"float32"` or `"bfloat16"`.
            float16 is refused: Phi's attention overflows it.
        weights: `"raw"` for Hugging Face's exact numerics, `"folded"` for LayerNorm folding
            and centred writing weights (see module docstring).
        attn_result: also expose per-head outputs at `blocks.{L}.attn.hook_result`
            (`batch pos head d_model`; costs `n_heads` times the memory of `hook_attn_out`).
            `interp.methods.head_scores.head_results` computes the same from `hook_z` without this flag.
    """
    if weights not in ("raw", "folded"):
        raise InputError(f"weights={weights!r} is not allowed; use 'raw' or 'folded'.")
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    resolved = resolve_source(source)
    tokenizer = load_tokenizer(resolved.path)
    hf_model = _load_hf_model(resolved, resolved_dtype, resolved_device)
    if weights == "folded":
        fold_phi_weights(hf_model)
    bridge = _wrap(hf_model, tokenizer, resolved, resolved_device, resolved_dtype)
    if attn_result:
        bridge.set_use_attn_result(True)
    cfg = bridge.cfg
    bridge.interp_info = ModelInfo(
        source=resolved.name,
        kind=resolved.kind,
        path=str(resolved.path),
        weights=weights,
        dtype=str(resolved_dtype).removeprefix("torch."),
        device=str(resolved_device),
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        d_model=cfg.d_model,
        d_head=cfg.d_head,
        d_mlp=cfg.d_mlp,
        d_vocab=cfg.d_vocab,
        rotary_dim=hf_model.model.layers[0].self_attn.rotary_ndims,
    )
    return bridge


def _load_hf_model(resolved: ResolvedSource, dtype: torch.dtype, device: torch.device):
    from transformers import PhiForCausalLM
    from transformers.utils import logging as hf_logging

    progress_bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Loading weights" bar on every load is noise in notebooks and logs
    try:
        model = PhiForCausalLM.from_pretrained(str(resolved.path), dtype=dtype, attn_implementation="eager")
    except Exception as error:  # truncated or missing weights, mismatched shapes (SafetensorError too)
        weights = sorted(p.name for p in resolved.path.glob("*.safetensors")) or ["no *.safetensors file"]
        raise ModelSourceError(
            f"The weights in {resolved.path} cannot be loaded ({', '.join(weights)}: {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). Re-download or re-save the checkpoint."
        ) from None
    finally:
        if progress_bar:
            hf_logging.enable_progress_bar()
    return model.to(device).eval()


def _wrap(hf_model, tokenizer, resolved: ResolvedSource, device: torch.device, dtype: torch.dtype):
    from transformer_lens.model_bridge import TransformerBridge

    # transformers logs a generation-config notice per load; it is noise for analysis work.
    logging.getLogger("transformers").setLevel(logging.ERROR)
    bridge = TransformerBridge.boot_transformers(
        str(resolved.path), hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype
    )
    bridge.eval()
    _mend_kv_cache(bridge)
    _quiet_generate(bridge)
    _add_no_bos(bridge, tokenizer, resolved)
    _fill_config(bridge.cfg, hf_model)
    _refuse_float16_later(bridge)
    return bridge


def _mend_kv_cache(bridge) -> None:
    """Hand each attention bridge the key/value cache under the name it reads.

    transformers 5's `PhiDecoderLayer` calls its attention with `cache=...` (the old name,
    `past_key_values`, is deprecated); the bridge's reimplemented attention looks only for
    `past_key_values` or `layer_past` (`AttentionBridge._update_kv_cache`) and, finding neither,
    leaves the cache empty: each cached step then attends to the newest token alone.
    """
    for block in bridge.blocks:
        attn = block.attn
        update = attn._update_kv_cache  # bound method of this instance

        def update_with_cache(k, v, _update=update, **kwargs):
            if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
                kwargs["past_key_values"] = kwargs["cache"]
            return _update(k, v, **kwargs)

        attn._update_kv_cache = update_with_cache


def _quiet_generate(bridge) -> None:
    """`model.generate` without the deprecation warning its loop triggers at every call."""
    generate = bridge.generate

    @functools.wraps(generate)
    def generate_quietly(*args, **kwargs):
        # the bridge's loop passes `past_key_values=` to PhiForCausalLM, which warns at every call
        # that the name is deprecated: noise to a user, who did not write it
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="`past_key_values` is deprecated", category=FutureWarning
            )
            return generate(*args, **kwargs)

    bridge.generate = generate_quietly


def _add_no_bos(bridge, tokenizer, resolved: ResolvedSource) -> None:
    """Make the bridge's tokenizer add no BOS, as Phi-2's own tokenizer and `to_tokens` do.

    The bridge reloads the tokenizer with `add_bos_token=True` (TransformerLens's
    `get_tokenizer_with_bos`), and its `to_tokens` strips the BOS again, so a direct
    `model.tokenizer(text)` gave one token more than every other entry point.
    """
    bridge.tokenizer.add_bos_token = False  # rebuilds the post-processor
    bridge.cfg.tokenizer_prepends_bos = False
    probe = "When Mary"
    if bridge.tokenizer(probe)["input_ids"] != tokenizer(probe, add_special_tokens=False)["input_ids"]:
        raise ModelSourceError(
            f"The tokenizer in {resolved.path} adds special tokens that interp cannot turn off "
            f"({bridge.tokenizer(probe)['input_ids']} for {probe!r}); Phi's tokenizer adds none. Replace "
            "the tokenizer files with the original checkpoint's."
        )


def _fill_config(cfg, hf_model) -> None:
    """Fill the config fields the bridge leaves at defaults, as `HookedTransformerConfig` did for Phi."""
    hf_config = hf_model.config
    cfg.rotary_dim = hf_model.model.layers[0].self_attn.rotary_ndims  # round(factor * d_head)
    cfg.attn_scale = cfg.d_head**0.5  # scores are divided by sqrt(d_head) (use_attn_scale)
    cfg.original_architecture = "PhiForCausalLM"
    cfg.initializer_range = hf_config.initializer_range
    cfg.eps = hf_config.layer_norm_eps
    # TransformerLens's count: the attention and MLP weight matrices (no embeddings, biases, LayerNorms)
    cfg.n_params = cfg.n_layers * (4 * cfg.d_model * cfg.n_heads * cfg.d_head + 2 * cfg.d_model * cfg.d_mlp)


def _refuse_float16_later(bridge) -> None:
    """`model.half()` and `model.to(torch.float16)` raise UnsafeDtypeError, as `load_model` does."""
    to = bridge.to

    def to_checked(*args, **kwargs):
        targets = (*args, kwargs.get("dtype"))
        if any(
            t is torch.float16 or (isinstance(t, torch.Tensor) and t.dtype is torch.float16) for t in targets
        ):
            raise UnsafeDtypeError(FP16_EXPLANATION)
        return to(*args, **kwargs)

    def half(*args, **kwargs):
        raise UnsafeDtypeError(FP16_EXPLANATION)

    bridge.to = functools.wraps(to)(to_checked)
    bridge.half = half
