"""In-place folding (interp.model.folding): log-probs unchanged, weights folded, same as transformer-lens."""

from __future__ import annotations

import torch
from helpers import TOKENS, hf_reference

from interp.model.loading import load_model


class TestFolding:
    def test_folded_log_probs_equal_hf(self, tiny_phi_dir):
        model = load_model(tiny_phi_dir, weights="folded")
        with torch.no_grad():
            expected = hf_reference(tiny_phi_dir)(TOKENS).logits.log_softmax(-1)
            actual = model(TOKENS).log_softmax(-1)
        assert (actual - expected).abs().max() <= 1e-4

    def test_folded_weights_are_folded(self, tiny_phi_dir):
        model = load_model(tiny_phi_dir, weights="folded")
        hf = model.original_model
        for layer in hf.model.layers:
            assert torch.allclose(layer.input_layernorm.weight, torch.ones(80))
            assert torch.allclose(layer.input_layernorm.bias, torch.zeros(80))
            assert layer.self_attn.dense.weight.mean(0).abs().max() < 1e-6  # writes centred
            assert layer.mlp.fc2.weight.mean(0).abs().max() < 1e-6
            assert layer.self_attn.v_proj.bias.abs().max() == 0  # folded into the output bias
        assert hf.model.embed_tokens.weight.mean(1).abs().max() < 1e-6
        assert hf.lm_head.weight.mean(0).abs().max() < 1e-6

    def test_folded_activations_equal_transformer_lens_compatibility_mode(self, tiny_phi_dir):
        """Our in-place folding gives the same activations as transformer-lens's own processing."""
        from transformer_lens.model_bridge import TransformerBridge

        ours = load_model(tiny_phi_dir, weights="folded")
        reference = TransformerBridge.boot_transformers(
            str(tiny_phi_dir), device="cpu", tokenizer=ours.tokenizer
        )
        reference.enable_compatibility_mode(disable_warnings=True)
        names = [
            f"blocks.{L}.{h}"
            for L in range(2)
            for h in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out", "attn.hook_z", "attn.hook_pattern")
        ]
        _, ours_cache = ours.run_with_cache(TOKENS, names_filter=names)
        _, ref_cache = reference.run_with_cache(TOKENS, names_filter=names)
        for name in names:
            assert (ours_cache[name] - ref_cache[name]).abs().max() <= 1e-4, name
