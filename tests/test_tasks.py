"""Tasks build valid prompt pairs under the loaded tokenizer, and name what is not a single token."""

from __future__ import annotations

import pytest
import torch

from interp.data.prompts import PromptError
from interp.data.tasks import build_pairs
from interp.data.tasks.ioi import NAMES, OBJECTS, PLACES, check_single_tokens
from interp.data.tasks.options import PairConfig, TaskConfig


def test_ioi_on_the_toy_model_flips_the_answer(toy_model):
    pairs = build_pairs(TaskConfig(name="ioi", n_pairs=20), toy_model, seed=0)
    assert len(pairs) == 20
    for pair in pairs.pairs:
        assert pair.clean != pair.corrupted and pair.clean.count(pair.wrong.strip()) == 2
        assert pair.corrupted.count(pair.answer.strip()) == 2
    with torch.no_grad():
        logits = toy_model(pairs.clean_tokens)
    final = logits[torch.arange(20), pairs.final_pos]
    assert (
        final[torch.arange(20), pairs.answer] > final[torch.arange(20), pairs.wrong]
    ).float().mean() >= 0.9


def test_ioi_names_that_are_not_single_tokens_are_listed(toy_model):
    with pytest.raises(PromptError, match=r"not single tokens.*'Zebedee'"):
        build_pairs(TaskConfig(name="ioi", names=["Mary", "Zebedee"]), toy_model, seed=0)


def test_default_phi2_vocabulary_is_single_tokens(gpt2_bpe_dir):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE.from_file(str(gpt2_bpe_dir / "encoder.json"), str(gpt2_bpe_dir / "vocab.bpe")))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    check_single_tokens(tokenizer, NAMES, "names")
    check_single_tokens(tokenizer, PLACES + OBJECTS, "places/objects")
    with pytest.raises(PromptError, match="Zebedee"):
        check_single_tokens(tokenizer, ["Zebedee"], "names")


def test_induction_pairs(toy_model):
    pairs = build_pairs(TaskConfig(name="induction", n_pairs=8, seq_len=6), toy_model, seed=1)
    assert pairs.clean_tokens.shape == (8, 11) and pairs.same_length
    assert torch.equal(pairs.clean_tokens[:, 6:], pairs.clean_tokens[:, :5])
    assert torch.equal(pairs.answer, pairs.clean_tokens[:, 5]) and (pairs.answer != pairs.wrong).all()
    with torch.no_grad():
        final = toy_model(pairs.clean_tokens)[:, -1]
    assert (final.argmax(-1) == pairs.answer).float().mean() >= 0.9  # the toy model does induction


def test_custom_pairs(toy_model):
    pair = PairConfig(
        clean="When Mary and John went to the store, John gave a drink to",
        corrupted="When Mary and John went to the store, Mary gave a drink to",
        answer=" Mary",
        wrong=" John",
    )
    pairs = build_pairs(TaskConfig(name="custom", pairs=[pair]), toy_model, seed=0)
    assert len(pairs) == 1 and pairs.lengths.tolist() == [14]


def phi2_like_tokenizer(gpt2_bpe_dir):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE.from_file(str(gpt2_bpe_dir / "encoder.json"), str(gpt2_bpe_dir / "vocab.bpe")))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", unk_token="<|endoftext|>")


def test_docstring_pairs_under_phi2_vocabulary(gpt2_bpe_dir):
    from helpers import tokenizer_only_model

    model = tokenizer_only_model(phi2_like_tokenizer(gpt2_bpe_dir))
    pairs = build_pairs(TaskConfig(name="docstring", n_pairs=12), model, seed=0)
    assert pairs.same_length and len(pairs) == 12
    for pair in pairs.pairs:
        definition = pair.clean.splitlines()[0]
        assert pair.answer.strip() in definition and pair.answer.strip() not in pair.corrupted.splitlines()[0]
        assert pair.wrong.strip() in pair.corrupted.splitlines()[0] and pair.clean.endswith(":param")


def test_docstring_on_the_toy_model(toy_model):
    pairs = build_pairs(TaskConfig(name="docstring", n_pairs=32), toy_model, seed=0)
    assert pairs.same_length
    rows = torch.arange(len(pairs))
    with torch.no_grad():
        final = toy_model(pairs.clean_tokens)[rows, pairs.final_pos]
    assert (final.argmax(-1) == pairs.answer).float().mean() >= 0.9
