"""The toy model organism: trained behaviour on held-out data, size, determinism, vocabulary."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from interp.data.tasks.ioi_grammar import sample_ioi
from interp.model.sources import TOY_DIR
from interp.toy.behaviour import ioi_examples, ioi_logit_diffs
from interp.toy.train import make_tokenizer, train
from interp.toy.vocab import HELD_OUT_NAMES, HELD_OUT_TEMPLATES, TRAIN_NAMES, TRAIN_TEMPLATES, UNK


@pytest.mark.parametrize("split", ["held_out_templates", "held_out_names", "held_out_both"])
def test_ioi_on_held_out_data(toy_model, split):
    diffs = ioi_logit_diffs(toy_model, ioi_examples(split, n=300, seed=11))
    accuracy, mean = float((diffs > 0).float().mean()), float(diffs.mean())
    print(f"{split}: accuracy {accuracy:.3f}, mean logit diff {mean:.2f}")
    assert accuracy >= 0.9
    assert mean >= 2.0


def test_held_out_templates_and_names_are_really_held_out():
    assert not set(HELD_OUT_TEMPLATES) & set(TRAIN_TEMPLATES)
    assert not set(HELD_OUT_NAMES) & set(TRAIN_NAMES)
    tokenizer = make_tokenizer()
    held_out_words = {
        w
        for t in HELD_OUT_TEMPLATES
        for w in tokenizer.tokenize(t.format(A="Mary", B="John", PLACE="park", OBJ="book"))
    }
    trained_words = {
        w
        for t in TRAIN_TEMPLATES
        for w in tokenizer.tokenize(t.format(A="Mary", B="John", PLACE="park", OBJ="book"))
    }
    assert held_out_words <= trained_words  # unseen frames, but no untrained word


def test_every_name_and_template_word_is_one_known_token():
    import random

    tokenizer = make_tokenizer()
    rng = random.Random(0)
    for _ in range(200):
        ex = sample_ioi(rng, TRAIN_TEMPLATES + HELD_OUT_TEMPLATES, TRAIN_NAMES + HELD_OUT_NAMES)
        assert UNK not in tokenizer.tokenize(ex.prompt + ex.io)
        assert len(tokenizer(ex.io)["input_ids"]) == 1 and len(tokenizer(ex.s)["input_ids"]) == 1


def test_weights_are_small_and_recorded():
    files = [p for p in TOY_DIR.iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 10 * 1024**2
    info = json.loads((TOY_DIR / "training.json").read_text())
    assert info["seed"] == 0 and info["steps"] >= 1000
    assert info["train_seconds"] > 0  # recorded for the card; how long training takes is not asserted


def test_training_is_deterministic_from_the_seed(tmp_path):
    train(steps=3, seed=5, out=tmp_path / "a", batch_size=8)
    train(steps=3, seed=5, out=tmp_path / "b", batch_size=8)
    a = load_file(tmp_path / "a" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = load_file(
        train(steps=3, seed=6, out=tmp_path / "c", batch_size=8) and tmp_path / "c" / "model.safetensors"
    )
    assert not torch.equal(a["lm_head.weight"], c["lm_head.weight"])


def test_toy_names_and_words_are_single_phi2_tokens(gpt2_bpe_dir):
    """The toy's IOI vocabulary is also single-token under Phi-2's (GPT-2 BPE) vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from interp.toy.vocab import OBJECTS, PLACES

    bpe = Tokenizer(models.BPE.from_file(str(gpt2_bpe_dir / "encoder.json"), str(gpt2_bpe_dir / "vocab.bpe")))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    words = TRAIN_NAMES + HELD_OUT_NAMES + PLACES + OBJECTS
    multi = {w: bpe.encode(" " + w).tokens for w in words if len(bpe.encode(" " + w).ids) != 1}
    assert not multi, f"not single Phi-2 tokens: {multi}"


def test_committed_tokenizer_matches_the_vocabulary_in_code():
    saved = json.loads((TOY_DIR / "tokenizer.json").read_text())["model"]["vocab"]
    from interp.toy.vocab import vocabulary

    assert sorted(saved, key=saved.get) == list(vocabulary())
