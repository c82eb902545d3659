"""Model sources (interp.model.sources): directories, hub ids in the cache, and the clear errors for bad ones."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import TOKENS, hf_reference, save_phi_dir, use_hf_cache

from interp.base.errors import ModelSourceError
from interp.model.loading import load_model


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

    @pytest.mark.parametrize(
        "damage", ["truncated", "a JSON list", "a directory", "a FIFO", "not UTF-8"], ids=lambda d: d
    )
    def test_damaged_config_json_is_refused_by_name(self, tmp_path, tiny_phi_dir, damage):
        """config.json is read as a file: a FIFO must not hang the load, a directory or a list must not
        reach transformers as a config."""
        import os

        directory = tmp_path / "damaged"
        shutil.copytree(tiny_phi_dir, directory)
        config = directory / "config.json"
        text = config.read_text()
        if damage in ("a directory", "a FIFO"):
            config.unlink()
            config.mkdir() if damage == "a directory" else os.mkfifo(config)
        else:
            data = {"truncated": text[:20].encode(), "a JSON list": b"[1, 2]", "not UTF-8": b"\xff\xfe{}"}
            config.write_bytes(data[damage])
        with pytest.raises(ModelSourceError, match="config"):
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
