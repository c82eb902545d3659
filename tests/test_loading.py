"""load_model: numerical equality with Hugging Face's PhiForCausalLM, hooks, dtypes and devices."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TOKENS, hf_reference

from interp.base.errors import UnsafeDtypeError
from interp.methods.head_scores import head_results
from interp.model.hooks import active_hook_count
from interp.model.loading import load_model


def test_fixture_is_the_shape_we_claim(tiny_phi_dir):
    config = json.loads((tiny_phi_dir / "config.json").read_text())
    assert config["num_hidden_layers"] >= 2
    assert config["rope_parameters"]["partial_rotary_factor"] == 0.4
    model = load_model(tiny_phi_dir)
    assert model.interp_info.d_head == 40 and model.interp_info.rotary_dim == 16
    ln = model.original_model.model.layers[0].input_layernorm
    assert (ln.weight - 1).abs().max() > 0.1 and ln.bias.abs().max() > 0.05  # folding has work to do


class TestMatchesHuggingFace:
    @pytest.mark.parametrize("attn_result", [False, True])
    def test_raw_logits_equal_hf(self, tiny_phi_dir, attn_result):
        model = load_model(tiny_phi_dir, weights="raw", attn_result=attn_result)
        with torch.no_grad():
            expected = hf_reference(tiny_phi_dir)(TOKENS).logits
            actual = model(TOKENS)
        assert actual.shape == expected.shape
        assert (actual - expected).abs().max() <= 1e-4


class TestHeadResults:
    @pytest.mark.parametrize("weights", ["raw", "folded"])
    def test_head_results_sum_to_attention_output(self, tiny_phi_dir, weights):
        model = load_model(tiny_phi_dir, weights=weights, attn_result=True)
        _, cache = model.run_with_cache(TOKENS)
        for layer in range(model.cfg.n_layers):
            result = cache[f"blocks.{layer}.attn.hook_result"]
            assert result.shape == (2, TOKENS.shape[1], 2, 80)
            total = result.sum(dim=2) + model.b_O[layer]
            assert (total - cache[f"blocks.{layer}.hook_attn_out"]).abs().max() <= 1e-4
            from_z = head_results(model, cache[f"blocks.{layer}.attn.hook_z"], layer)
            assert (from_z - result).abs().max() <= 1e-4


class TestHooks:
    # name -> shape for batch 2, pos 14; d_model 80, 2 heads x 40, d_mlp 192, d_vocab 256
    EXPECTED = {
        "hook_embed": (2, 14, 80),
        "blocks.0.hook_resid_pre": (2, 14, 80),
        "blocks.0.ln1.hook_scale": (2, 14, 1),
        "blocks.0.attn.hook_q": (2, 14, 2, 40),
        "blocks.0.attn.hook_k": (2, 14, 2, 40),
        "blocks.0.attn.hook_v": (2, 14, 2, 40),
        "blocks.0.attn.hook_rot_q": (2, 14, 2, 40),
        "blocks.0.attn.hook_attn_scores": (2, 2, 14, 14),
        "blocks.0.attn.hook_pattern": (2, 2, 14, 14),
        "blocks.0.attn.hook_z": (2, 14, 2, 40),
        "blocks.0.hook_attn_out": (2, 14, 80),
        "blocks.0.mlp.hook_pre": (2, 14, 192),
        "blocks.0.mlp.hook_post": (2, 14, 192),
        "blocks.0.hook_mlp_out": (2, 14, 80),
        "blocks.1.hook_resid_post": (2, 14, 80),
        "ln_final.hook_scale": (2, 14, 1),
        "ln_final.hook_normalized": (2, 14, 80),
    }

    def test_documented_hooks_have_documented_shapes(self, tiny_phi_dir):
        model = load_model(tiny_phi_dir)
        _, cache = model.run_with_cache(TOKENS, names_filter=list(self.EXPECTED))
        for name, shape in self.EXPECTED.items():
            assert tuple(cache[name].shape) == shape, name

    def test_parallel_block_has_no_resid_mid(self, tiny_phi_dir):
        model = load_model(tiny_phi_dir)
        assert not [name for name in model.hook_dict if "resid_mid" in name]
        _, cache = model.run_with_cache(TOKENS)
        resid_post = (
            cache["blocks.0.hook_resid_pre"]
            + cache["blocks.0.hook_attn_out"]
            + cache["blocks.0.hook_mlp_out"]
        )
        assert (resid_post - cache["blocks.0.hook_resid_post"]).abs().max() <= 1e-4

    def test_no_hooks_left_after_loading(self, tiny_phi_dir):
        assert active_hook_count(load_model(tiny_phi_dir)) == 0


class TestDtypeAndDevice:
    def test_auto_is_float32_on_cpu(self, tiny_phi_dir):
        model = load_model(tiny_phi_dir, device="cpu")
        assert model.interp_info.dtype == "float32"
        assert next(model.original_model.parameters()).dtype == torch.float32

    @pytest.mark.parametrize("weights", ["raw", "folded"])
    def test_bfloat16_runs_finite_and_close(self, tiny_phi_dir, weights):
        model = load_model(tiny_phi_dir, dtype="bfloat16", weights=weights)
        with torch.no_grad():
            logits = model(TOKENS).float()
            expected = hf_reference(tiny_phi_dir)(TOKENS).logits
        assert torch.isfinite(logits).all()
        assert (logits.log_softmax(-1) - expected.log_softmax(-1)).abs().max() < 0.5

    @pytest.mark.parametrize("dtype", ["float16", "fp16", torch.float16])
    def test_float16_is_refused_with_the_reason(self, tiny_phi_dir, dtype):
        with pytest.raises(UnsafeDtypeError, match="overflow.*bfloat16"):
            load_model(tiny_phi_dir, dtype=dtype)

    def test_unknown_dtype_and_weights_are_refused(self, tiny_phi_dir):
        with pytest.raises(ValueError, match="float32"):
            load_model(tiny_phi_dir, dtype="int8")
        # ValueError at run time; the jaxtyping/beartype checker in tests rejects the Literal first
        with pytest.raises((ValueError, TypeError), match="raw.*folded"):
            load_model(tiny_phi_dir, weights="centred")


def test_loading_writes_nothing_to_the_terminal(tiny_phi_dir, capfd):
    """No progress bar or notice on stderr/stdout: it would be noise in every notebook cell and log."""
    load_model(tiny_phi_dir)
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)
