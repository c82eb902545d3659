"""Write the SAELens fixtures with SAELens 6.54's own classes, and check that SAELens reads ours.

Not run by the test suite: sae-lens pins transformer-lens < 4. Its SAE classes import fine beside
TransformerLens 4 once its package `__init__` (which imports HookedTransformer) is bypassed, which
this script does; run it by hand with sae-lens importable, e.g.

    pip install --no-deps --target /tmp/sl sae-lens==6.54.12
    PYTHONPATH=/tmp/sl:. python tests/dictionaries/data/make_saelens_files.py

It writes, under saelens_6.54/: one directory per architecture by `SAE.save_model` (and a trained
BatchTopK by `save_inference_model`, which SAELens writes as a JumpReLU), and `expected.safetensors`
with inputs and SAELens's own `encode` / `forward` outputs. Then it saves dictionaries with
`interp.dictionaries.save_dictionary`, loads them with `SAE.load_from_disk` and checks SAELens's
encode and forward equal ours.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import tempfile
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).parent / "saelens_6.54"


def import_saelens():
    import transformer_lens

    legacy = types.ModuleType("transformer_lens.HookedTransformer")
    legacy.HookedRootModule = transformer_lens.HookedRootModule
    sys.modules["transformer_lens.HookedTransformer"] = legacy
    spec = importlib.util.find_spec("sae_lens")
    package = types.ModuleType("sae_lens")
    package.__path__ = spec.submodule_search_locations
    package.__version__ = "6.54.12"
    package.logger = logging.getLogger("sae_lens")
    sys.modules["sae_lens"] = package
    import sae_lens.saes as saes
    from sae_lens.registry import register_sae_class, register_sae_training_class

    for name, cls, cfg in [
        ("standard", saes.StandardSAE, saes.StandardSAEConfig),
        ("topk", saes.TopKSAE, saes.TopKSAEConfig),
        ("jumprelu", saes.JumpReLUSAE, saes.JumpReLUSAEConfig),
        ("transcoder", saes.Transcoder, saes.TranscoderConfig),
        ("skip_transcoder", saes.SkipTranscoder, saes.SkipTranscoderConfig),
        ("jumprelu_transcoder", saes.JumpReLUTranscoder, saes.JumpReLUTranscoderConfig),
        ("jumprelu_skip_transcoder", saes.JumpReLUSkipTranscoder, saes.JumpReLUSkipTranscoderConfig),
    ]:
        register_sae_class(name, cls, cfg)
    register_sae_training_class("batchtopk", saes.BatchTopKTrainingSAE, saes.BatchTopKTrainingSAEConfig)
    return saes


def main() -> None:
    saes = import_saelens()
    from sae_lens.saes.sae import SAE, SAEMetadata

    torch.manual_seed(0)
    x = torch.randn(40, 10)
    expected = {"x": x}
    sae_hooks = {"hook_name": "blocks.2.hook_resid_pre"}
    tc_hooks = {"hook_name": "blocks.1.ln1.hook_normalized", "hook_name_out": "blocks.1.hook_mlp_out"}
    cases = {
        "standard": saes.StandardSAE(
            saes.StandardSAEConfig(d_in=10, d_sae=24, metadata=SAEMetadata(**sae_hooks))
        ),
        "topk": saes.TopKSAE(saes.TopKSAEConfig(d_in=10, d_sae=24, k=3, metadata=SAEMetadata(**sae_hooks))),
        "topk_rescaled": saes.TopKSAE(
            saes.TopKSAEConfig(
                d_in=10, d_sae=24, k=3, rescale_acts_by_decoder_norm=True, metadata=SAEMetadata(**sae_hooks)
            )
        ),
        "jumprelu": saes.JumpReLUSAE(
            saes.JumpReLUSAEConfig(d_in=10, d_sae=24, metadata=SAEMetadata(**sae_hooks))
        ),
        "transcoder": saes.Transcoder(
            saes.TranscoderConfig(
                d_in=10, d_sae=24, d_out=6, apply_b_dec_to_input=False, metadata=SAEMetadata(**tc_hooks)
            )
        ),
        "skip_transcoder": saes.SkipTranscoder(
            saes.SkipTranscoderConfig(
                d_in=10, d_sae=24, d_out=6, apply_b_dec_to_input=False, metadata=SAEMetadata(**tc_hooks)
            )
        ),
        "jumprelu_skip_transcoder": saes.JumpReLUSkipTranscoder(
            saes.JumpReLUSkipTranscoderConfig(
                d_in=10, d_sae=24, d_out=6, apply_b_dec_to_input=False, metadata=SAEMetadata(**tc_hooks)
            )
        ),
    }
    for name, sae in cases.items():
        with torch.no_grad():
            for parameter_name, parameter in sae.named_parameters():
                parameter.copy_(
                    torch.rand_like(parameter) * 0.3
                    if parameter_name == "threshold"
                    else torch.randn_like(parameter)
                )
        sae.save_model(HERE / name)
        with torch.no_grad():
            expected[f"{name}.acts"] = sae.encode(x)
            expected[f"{name}.out"] = sae(x)
    batchtopk = saes.BatchTopKTrainingSAE(
        saes.BatchTopKTrainingSAEConfig(d_in=10, d_sae=24, k=3, metadata=SAEMetadata(**sae_hooks))
    )
    with torch.no_grad():
        for parameter in batchtopk.parameters():
            parameter.normal_()
        batchtopk.topk_threshold.fill_(0.4)
    batchtopk.save_inference_model(HERE / "batchtopk")
    inference = SAE.load_from_disk(HERE / "batchtopk")
    with torch.no_grad():
        expected["batchtopk.acts"] = inference.encode(x)
        expected["batchtopk.out"] = inference(x)
    save_file({k: v.contiguous() for k, v in expected.items()}, HERE / "expected.safetensors")

    from interp.dictionaries import load_dictionary, save_dictionary

    with tempfile.TemporaryDirectory() as tmp:
        for name in [*cases, "batchtopk"]:
            ours = load_dictionary(HERE / name)
            directory = save_dictionary(ours, Path(tmp) / name)
            theirs = SAE.load_from_disk(directory)
            with torch.no_grad():
                torch.testing.assert_close(theirs.encode(x), ours.encode(x))
                torch.testing.assert_close(theirs(x), ours(x))
            print(f"SAELens reads our {name} as {type(theirs).__name__}: encode and forward equal")
        from interp.dictionaries import make_dictionary

        for architecture, kind, fields in [
            ("relu", "sae", {}), ("topk", "sae", {"k": 3}), ("batchtopk", "sae", {"k": 3}), ("jumprelu", "sae", {}),
            ("relu", "skip_transcoder", {}), ("jumprelu", "transcoder", {}),
        ]:  # fmt: skip
            hooks = sae_hooks if kind == "sae" else tc_hooks
            ours = make_dictionary(
                architecture,
                d_in=10,
                d_sae=24,
                kind=kind,
                d_out=None if kind == "sae" else 6,
                **hooks,
                **fields,
            )
            with torch.no_grad():
                for parameter in [*ours.parameters(), *ours.buffers()]:
                    parameter.copy_(
                        torch.rand_like(parameter) * 0.3
                        if parameter.shape == (24,)
                        else torch.randn_like(parameter)
                    )
            directory = save_dictionary(ours, Path(tmp) / f"ours_{architecture}_{kind}")
            theirs = SAE.load_from_disk(directory)
            with torch.no_grad():
                torch.testing.assert_close(theirs.encode(x), ours.encode(x))
                torch.testing.assert_close(theirs(x), ours(x))
            print(f"SAELens reads our trained-here {architecture} {kind} as {type(theirs).__name__}: equal")


if __name__ == "__main__":
    main()
