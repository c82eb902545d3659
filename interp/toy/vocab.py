"""The toy model's vocabulary, IOI templates and its word-level tokenizer.

Every word of every template is one token, so names and answers are single tokens by construction.
Words carry GPT-2's byte-level convention: a word after a space is stored with its leading space
(" Mary" -> "ĠMary"), exactly as Phi-2's tokenizer stores them.

Names and templates are split into a training part and a held-out part. Held-out names never appear
in an IOI sentence during training (only inside random induction sequences, where every token
appears), and held-out templates never appear at all; the model card reports accuracy on both.
"""

from __future__ import annotations

import re

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

EOT = "<|endoftext|>"
UNK = "<|unk|>"

TRAIN_NAMES = [
    "Mary", "John", "Tom", "James", "Dan", "Sid", "Martin", "Amy", "Kate", "Lisa", "Paul", "Anna",
    "Mark", "Laura", "Peter", "Rose", "Sam", "Emma", "Jack", "Claire", "Max", "Jane", "Ben", "Alice",
    "David", "Sarah", "Mike", "Grace", "Luke", "Ruth",
]  # fmt: skip
HELD_OUT_NAMES = ["Adam", "Helen", "Tim", "Susan", "Paula", "Ed", "Jenny", "Carl"]

PLACES = ["store", "garden", "school", "park", "office", "station", "market", "house", "beach", "river"]
OBJECTS = ["drink", "book", "ring", "kiss", "letter", "bone", "basketball", "computer", "snack", "necklace"]

# {A} is the indirect object (the answer), {B} the subject, who is mentioned twice.
TRAIN_TEMPLATES = [
    "When {A} and {B} went to the {PLACE}, {B} gave a {OBJ} to",
    "When {A} and {B} got a {OBJ} at the {PLACE}, {B} decided to give it to",
    "Then, {A} and {B} went to the {PLACE}. {B} gave a {OBJ} to",
    "Then, {A} and {B} had a long argument, and afterwards {B} said to",
    "After {A} and {B} went to the {PLACE}, {B} gave a {OBJ} to",
    "While {A} and {B} were working at the {PLACE}, {B} gave a {OBJ} to",
    "Friends {A} and {B} found a {OBJ} at the {PLACE}. {B} gave it to",
    "The {PLACE} {A} and {B} went to had a {OBJ}. {B} gave it to",
]
HELD_OUT_TEMPLATES = [
    "So {A} and {B} were at the {PLACE}. {B} handed a {OBJ} to",
    "Afterwards {A} and {B} went to the {PLACE}, and {B} brought a {OBJ} to",
]

# Words that only appear in random sequences, so the induction data is not all names and places.
FILLER = [
    "red", "blue", "green", "cat", "dog", "tree", "sun", "moon", "star", "road", "car", "boat",
    "cup", "door", "lamp", "fish", "bird", "hill", "rock", "snow", "rain", "wind", "fire", "salt",
    "milk", "bread", "chair", "table", "window", "paper", "stone", "cloud", "apple", "lemon",
    "piano", "train", "clock", "glass", "shoe", "coat", "hat", "key", "box", "bag", "pen", "map",
]  # fmt: skip

D_VOCAB = 256  # padded beyond the real tokens, as Phi-2 pads 50295 real tokens to 51200


def _words(text: str) -> list[str]:
    """Split a template the way GPT-2's pre-tokenizer does for plain words and punctuation."""
    return re.findall(r" ?[A-Za-z{}]+|[,.]", text)


def vocabulary() -> list[str]:
    """Every token string (byte-level form) in id order; ids beyond it up to D_VOCAB are unused."""
    words: list[str] = []
    for template in TRAIN_TEMPLATES + HELD_OUT_TEMPLATES:
        for word in _words(template):
            if "{" not in word:
                words.append(word)
    for name in TRAIN_NAMES + HELD_OUT_NAMES:
        words.append(" " + name)
    for word in PLACES + OBJECTS + FILLER:
        words.append(" " + word)
    ordered = list(dict.fromkeys(words))
    return [EOT, UNK] + [w.replace(" ", "Ġ") for w in ordered]


def build_tokenizer() -> Tokenizer:
    """A word-level tokenizer with GPT-2's byte-level pre-tokenizer and decoder."""
    vocab = {token: i for i, token in enumerate(vocabulary())}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([EOT, UNK])
    return tokenizer
