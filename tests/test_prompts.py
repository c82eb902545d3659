"""Prompt pairs: validation errors name the pair and show its tokens; padding keeps real lengths."""

from __future__ import annotations

import pytest
import torch

from interp.data.prompts import PromptError, PromptPairs
from interp.toy.train import make_tokenizer

TOK = make_tokenizer()
PAIR = dict(
    clean="When Mary and John went to the store, John gave a drink to",
    corrupted="When Mary and John went to the store, Mary gave a drink to",
    answer=" Mary",
    wrong=" John",
)
SHORT = dict(
    clean="When Amy and Tom met at the park, Tom said to",
    corrupted="When Amy and Tom met at the park, Amy said to",
    answer=" Amy",
    wrong=" Tom",
)


def test_tokenises_and_records_lengths():
    pairs = PromptPairs.from_strings(TOK, [PAIR, SHORT])
    assert pairs.clean_tokens.shape == (2, 14)
    assert pairs.lengths.tolist() == [14, 12] and pairs.final_pos.tolist() == [13, 11]
    assert not pairs.same_length
    assert [len(g) for g in pairs.length_groups()] == [1, 1]
    assert pairs.answer.tolist() == [TOK.convert_tokens_to_ids("ĠMary"), TOK.convert_tokens_to_ids("ĠAmy")]
    trimmed = pairs.select([1])
    assert trimmed.clean_tokens.shape == (1, 12) and torch.equal(
        trimmed.clean_tokens[0], pairs.clean_tokens[1, :12]
    )


def test_explicit_bos():
    pairs = PromptPairs.from_strings(TOK, [PAIR], prepend_bos=True)
    assert pairs.clean_tokens[0, 0].item() == TOK.bos_token_id and pairs.lengths.item() == 15


def test_different_lengths_name_the_pair_and_show_tokens():
    bad = dict(PAIR, corrupted="When Mary and John went to the big store, Mary gave a drink to")
    with pytest.raises(
        PromptError, match=r"Pair 1: .*different token lengths \(14 vs 15\)(.|\n)*corrupted: \['When'"
    ):
        PromptPairs.from_strings(TOK, [PAIR, bad])


def test_multi_token_answer_is_refused():
    with pytest.raises(PromptError, match=r"pair 0 answer ' Mary and' is 2 tokens, \[' Mary', ' and'\]"):
        PromptPairs.from_strings(TOK, [dict(PAIR, answer=" Mary and")])


def test_missing_leading_space_hint(gpt2_bpe_dir):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE.from_file(str(gpt2_bpe_dir / "encoder.json"), str(gpt2_bpe_dir / "vocab.bpe")))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    phi_like = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    with pytest.raises(PromptError, match="leading space"):
        PromptPairs.from_strings(phi_like, [dict(PAIR, answer="Amaryllis")])


def test_empty_dataset_is_refused():
    with pytest.raises(PromptError, match="empty"):
        PromptPairs.from_strings(TOK, [])


def test_words_outside_the_vocabulary_are_refused():
    with pytest.raises(PromptError, match="outside the tokenizer's vocabulary"):
        PromptPairs.from_strings(TOK, [dict(PAIR, clean=PAIR["clean"].replace("store", "zoo"))])
    with pytest.raises(PromptError, match="outside the tokenizer's vocabulary"):
        PromptPairs.from_strings(TOK, [dict(PAIR, answer=" Zebedee")])
