"""load_model: numerical equality with Hugging Face's PhiForCausalLM, folding, hooks, bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import save_phi_dir
from transformers import PhiForCausalLM

from interp.base.errors import ModelSourceError, UnsafeDtypeError
from interp.methods.head_scores import head_results
from interp.model.hooks import active_hook_count
from interp.model.loading import load_model

TOKENS = torch.tensor(
    [
        [2, 33, 3, 34, 4, 5, 6, 71, 7, 34, 8, 9, 81, 5],
        [40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53],
    ]
)


def use_hf_cache(monkeypatch, cache) -> None:
    """Point huggingface_hub at `cache`, offline (it reads both settings when imported)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))


def hf_reference(directory) -> PhiForCausalLM:
    return PhiForCausalLM.from_pretrained(directory, attn_implementation="eager").eval()


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


class TestSources:
    def test_directory_without_tokenizer_is_refused(self, tmp_path):
        directory = save_phi_dir(tmp_path / "no_tok", tokenizer=False)
        with pytest.raises(ModelSourceError, match="no tokenizer.*tokenizer.json"):
            load_model(directory)

    def test_empty_tokenizer_is_refused(self, tmp_path, tiny_phi_dir):
        directory = tmp_path / "empty_tok"
        shutil.copytree(tiny_phi_dir, directory)
        tok = json.loads((directory / "tokenizer.json").read_text())
        tok["model"]["vocab"] = {"<|endoftext|>": 0, "<|unk|>": 1}
        (directory / "tokenizer.json").write_text(json.dumps(tok))
        with pytest.raises(ModelSourceError, match="does not tokenize"):
            load_model(directory)

    def test_non_phi_model_is_refused(self, tmp_path):
        from transformers import GPT2Config, GPT2LMHeadModel

        directory = tmp_path / "gpt2"
        GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64)).save_pretrained(directory)
        with pytest.raises(ModelSourceError, match="GPT2LMHeadModel.*supports only PhiForCausalLM"):
            load_model(directory)

    def test_missing_directory_or_bad_name(self, tmp_path):
        with pytest.raises(ModelSourceError, match="neither an existing directory nor a hub id"):
            load_model(str(tmp_path / "nowhere"))

    def test_offline_without_cache_says_how_to_fix(self, tmp_path, monkeypatch):
        use_hf_cache(monkeypatch, tmp_path / "empty_cache")
        with pytest.raises(ModelSourceError) as info:
            load_model("phi-2")
        message = str(info.value)
        assert "microsoft/phi-2" in message and "hf download" in message and "load_model('/path/to" in message

    def test_model_in_the_hf_cache_loads_offline(self, tmp_path, monkeypatch, tiny_phi_dir):
        """The hub path for real: a snapshot in the Hugging Face cache layout, HF_HUB_OFFLINE=1."""
        cache = tmp_path / "hub"
        repo = cache / "models--microsoft--phi-2"
        snapshot = repo / "snapshots" / ("0" * 40)
        shutil.copytree(tiny_phi_dir, snapshot)
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("0" * 40)
        use_hf_cache(monkeypatch, cache)
        model = load_model("microsoft/phi-2")
        assert model.interp_info.kind == "hub" and model.interp_info.source == "microsoft/phi-2"
        with torch.no_grad():
            assert (model(TOKENS) - hf_reference(tiny_phi_dir)(TOKENS).logits).abs().max() <= 1e-4
