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


PROMPT = "When Mary and John went to the store, John gave a drink to"


class TestGenerate:
    """The bridge's own `generate` (what TransformerLens users call) against Hugging Face's greedy search on a
    freshly loaded PhiForCausalLM; transformers 5 renamed the attention's cache argument, which the bridge missed."""

    @pytest.mark.parametrize("weights", ["raw", "folded"])
    def test_tiny_phi_greedy_equals_hf(self, tiny_phi_dir, weights):
        prompt = TOKENS[:1, :6]
        expected = hf_reference(tiny_phi_dir).generate(
            prompt, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0
        )
        model = load_model(tiny_phi_dir, weights=weights)
        for cached in (True, False):
            actual = model.generate(
                prompt,
                max_new_tokens=12,
                do_sample=False,
                stop_at_eos=False,
                use_past_kv_cache=cached,
                verbose=False,
            )
            assert actual.tolist() == expected.tolist(), (weights, cached)
        # the wrapped Hugging Face model runs through the bridge's attention too
        wrapped = model.original_model.generate(
            prompt, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0
        )
        assert wrapped.tolist() == expected.tolist()

    @pytest.mark.parametrize("weights", ["raw", "folded"])
    def test_toy_greedy_text_equals_hf(self, weights):
        from interp.model.sources import TOY_DIR

        model = load_model("toy", weights=weights)
        ids = model.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
        expected = hf_reference(TOY_DIR).generate(ids, max_new_tokens=10, do_sample=False, pad_token_id=0)
        text = model.generate(PROMPT, max_new_tokens=10, do_sample=False, verbose=False)
        assert text == model.tokenizer.decode(expected[0])
        assert text.removeprefix(PROMPT).split()[:3] == ["Mary", "threw", "a"]  # not " Mary Mary Mary"


class TestNoBos:
    """Phi-2's tokenizer adds no BOS; every entry point that tokenizes a string agrees with it."""

    @pytest.fixture(scope="class")
    def plain_ids(self):
        from transformers import AutoTokenizer

        from interp.model.sources import TOY_DIR

        return AutoTokenizer.from_pretrained(str(TOY_DIR))(PROMPT)["input_ids"]

    def test_every_entry_point_tokenizes_alike(self, toy_model, plain_ids):
        import interp

        assert toy_model.tokenizer.bos_token_id not in plain_ids  # the reference itself adds none
        assert toy_model.tokenizer(PROMPT)["input_ids"] == plain_ids
        assert toy_model.tokenizer.encode(PROMPT) == plain_ids
        assert toy_model.to_tokens(PROMPT)[0].tolist() == plain_ids
        assert toy_model.to_str_tokens(PROMPT) == [toy_model.tokenizer.decode([i]) for i in plain_ids]
        logits, cache = toy_model.run_with_cache(PROMPT)
        assert cache["hook_embed"].shape[1] == len(plain_ids)
        assert torch.equal(logits, toy_model(torch.tensor([plain_ids])))
        generated = interp.generate(toy_model, PROMPT, max_new_tokens=2)
        assert generated.tokens[0][: len(plain_ids)].tolist() == plain_ids

    def test_prepend_bos_still_adds_exactly_one(self, toy_model, plain_ids):
        bos = toy_model.tokenizer.bos_token_id
        assert toy_model.to_tokens(PROMPT, prepend_bos=True)[0].tolist() == [bos] + plain_ids


class TestConfig:
    """The bridge's config fields that TransformerLens's HookedTransformerConfig filled for Phi, against the HF config."""

    def test_fields_match_the_hf_config(self, tiny_phi_dir):
        model = load_model(tiny_phi_dir)
        hf = json.loads((tiny_phi_dir / "config.json").read_text())
        cfg = model.cfg
        d_head = hf["hidden_size"] // hf["num_attention_heads"]
        expected = {
            "d_model": hf["hidden_size"],
            "n_layers": hf["num_hidden_layers"],
            "n_heads": hf["num_attention_heads"],
            "d_head": d_head,
            "d_mlp": hf["intermediate_size"],
            "d_vocab": hf["vocab_size"],
            "d_vocab_out": hf["vocab_size"],
            "n_ctx": hf["max_position_embeddings"],
            "eps": hf["layer_norm_eps"],
            "act_fn": hf["hidden_act"],
            "initializer_range": hf["initializer_range"],
            "rotary_dim": round(hf["rope_parameters"]["partial_rotary_factor"] * d_head),
            "rotary_base": hf["rope_parameters"]["rope_theta"],
            "normalization_type": "LN",
            "positional_embedding_type": "rotary",
            "parallel_attn_mlp": True,
            "gated_mlp": False,
            "attn_only": False,
            "final_rms": False,
            "use_attn_scale": True,
            "default_prepend_bos": False,
            "tokenizer_prepends_bos": False,
            "original_architecture": "PhiForCausalLM",
        }
        assert {name: getattr(cfg, name) for name in expected} == expected
        assert cfg.rotary_dim == model.interp_info.rotary_dim == 16
        assert cfg.attn_scale == pytest.approx(d_head**0.5, rel=1e-12)

    def test_attn_scale_is_what_attention_divides_by(self, tiny_phi_dir):
        model = load_model(tiny_phi_dir)
        _, cache = model.run_with_cache(TOKENS[:1])
        q, k = cache["blocks.0.attn.hook_rot_q"], cache["blocks.0.attn.hook_rot_k"]
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / model.cfg.attn_scale
        causal = torch.ones(scores.shape[-2:], dtype=torch.bool).tril()
        actual = cache["blocks.0.attn.hook_attn_scores"]
        assert (scores - actual)[..., causal].abs().max() <= 1e-4 * actual[..., causal].abs().max()

    def test_n_params_counts_the_weight_matrices(self, tiny_phi_dir):
        model = load_model(tiny_phi_dir)
        matrices = ("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2")
        count = sum(
            p.numel()
            for name, p in hf_reference(tiny_phi_dir).named_parameters()
            if name.endswith("weight") and name.split(".")[-2] in matrices
        )
        assert model.cfg.n_params == count


class TestFloat16AfterLoading:
    """`load_model` refuses float16; converting the loaded model is refused for the same reason."""

    @pytest.mark.parametrize(
        "convert",
        [
            lambda m: m.half(),
            lambda m: m.to(torch.float16),
            lambda m: m.to("cpu", torch.float16),
            lambda m: m.to(dtype=torch.float16),
            lambda m: m.to(torch.zeros(1, dtype=torch.float16)),
        ],
        ids=["half", "to_dtype", "to_device_dtype", "to_kwarg", "to_tensor"],
    )
    def test_refused(self, tiny_phi_dir, convert):
        model = load_model(tiny_phi_dir)
        with pytest.raises(UnsafeDtypeError, match="overflow"):
            convert(model)
        assert next(model.original_model.parameters()).dtype == torch.float32  # nothing was converted

    def test_other_conversions_still_work(self, tiny_phi_dir):
        model = load_model(tiny_phi_dir)
        assert model.to("cpu") is model
        model.to(torch.bfloat16)
        assert next(model.original_model.parameters()).dtype == torch.bfloat16


def test_generate_writes_no_deprecation_warning(toy_model, recwarn):
    toy_model.generate(PROMPT, max_new_tokens=2, do_sample=False, verbose=False)
    assert not [w for w in recwarn if "past_key_values" in str(w.message)]


def test_phi2_like_tokenizer_adds_no_bos_through_the_bridge(gpt2_bpe_dir, tmp_path):
    """Phi-2's tokenizer files (GPT-2's BPE, tokenizer_class CodeGenTokenizer, no add_bos_token): no BOS, as HF."""
    import shutil

    from helpers import save_phi_dir
    from transformers import AutoTokenizer

    save_phi_dir(tmp_path, tokenizer=False, vocab_size=51200)
    shutil.copy(gpt2_bpe_dir / "encoder.json", tmp_path / "vocab.json")
    shutil.copy(gpt2_bpe_dir / "vocab.bpe", tmp_path / "merges.txt")
    special = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    config = {
        **special,
        "add_prefix_space": False,
        "model_max_length": 2048,
        "tokenizer_class": "CodeGenTokenizer",
    }
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    expected = AutoTokenizer.from_pretrained(str(tmp_path))(PROMPT)["input_ids"]
    assert 50256 not in expected
    model = load_model(tmp_path)
    assert model.tokenizer(PROMPT)["input_ids"] == expected
    assert model.to_tokens(PROMPT)[0].tolist() == expected
