"""The toy model's vocabulary and its word-level tokenizer, built from the task grammars it is trained on.

The IOI sentences come from `interp.data.tasks.ioi_grammar` and the docstring prompts from
`interp.data.tasks.docstring`: the toy consumes the task grammars, never the reverse. Every word of
every template is one token, so names and answers are single tokens by construction.
Words carry GPT-2's byte-level convention: a word after a space is stored with its leading space
(" Mary" -> "ĠMary"), exactly as Phi-2's tokenizer stores them.

Names and templates are split into a training part and a held-out part. Held-out names never appear
in an IOI sentence during training (only in random induction sequences and in one-name sentences),
and held-out template frames are never trained on; the model card reports accuracy on both.
"""

from __future__ import annotations

import re
from functools import lru_cache

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from interp.data.tasks.ioi_grammar import GRAMMAR_NAMES as TRAIN_NAMES
from interp.data.tasks.ioi_grammar import HELD_OUT_NAMES, HELD_OUT_TEMPLATES, OBJECTS, PLACES, TRAIN_TEMPLATES

EOT = "<|endoftext|>"
UNK = "<|unk|>"

# Sentences with one name (or two, without an IOI ending), used for every name (held-out ones too) so that all names are known as
# names; the second mention can be predicted by copying. Never an IOI sentence.
NAME_SENTENCES = [
    "Then, {N} went to the {PLACE}, and {N} was happy",
    "Later, {N} walked to the {PLACE}, and then {N} found a {OBJ}",
    "When {N} and {M} went to the {PLACE}, they were happy",
]


# Words that only appear in random sequences, so the induction data is not all names and places.
FILLER = [
    "red", "blue", "green", "cat", "dog", "tree", "sun", "moon", "star", "road", "car", "boat",
    "cup", "door", "lamp", "fish", "bird", "hill", "rock", "snow", "rain", "wind", "fire", "salt",
    "milk", "bread", "chair", "table", "window", "paper", "stone", "cloud", "apple", "lemon",
    "piano", "train", "clock", "glass", "shoe", "coat", "hat", "key", "box", "bag", "pen", "map",
]  # fmt: skip

D_VOCAB = 384  # padded beyond the real tokens, as Phi-2 pads 50295 real tokens to 51200


def _words(text: str) -> list[str]:
    """Split a template the way GPT-2's pre-tokenizer does for plain words and punctuation."""
    return re.findall(r" ?[A-Za-z{}]+|[,.]", text)


def docstring_pieces() -> list[str]:
    """Byte-level pre-tokens of every docstring-task prompt (`interp.data.tasks.docstring`), in first-seen order."""
    from tokenizers import pre_tokenizers

    from interp.data.tasks.docstring import ARG_NAMES, FUNCTIONS, WORDS, prompt_text

    split = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True).pre_tokenize_str
    pieces: list[str] = []
    for i, function in enumerate(FUNCTIONS):
        for j, word in enumerate(WORDS):
            words = [word] + [WORDS[(j + k) % len(WORDS)] for k in range(1, 7)]
            args = [ARG_NAMES[(i + j + k) % len(ARG_NAMES)] for k in range(4)]
            pieces += [piece for piece, _ in split(prompt_text(function, args, args[:2], words))]
    pieces += ["Ġ" + arg for arg in ARG_NAMES]  # answers
    return list(dict.fromkeys(pieces))


@lru_cache(maxsize=1)
def vocabulary() -> tuple[str, ...]:
    """Every token string (byte-level form) in id order; ids beyond it up to D_VOCAB are unused."""
    words: list[str] = []
    for template in TRAIN_TEMPLATES + HELD_OUT_TEMPLATES + NAME_SENTENCES:
        for word in _words(template):
            if "{" not in word:
                words.append(word)
    for name in TRAIN_NAMES + HELD_OUT_NAMES:
        words.append(" " + name)
    for word in PLACES + OBJECTS + FILLER:
        words.append(" " + word)
    ordered = list(dict.fromkeys(words))
    return tuple(dict.fromkeys([EOT, UNK, *(w.replace(" ", "Ġ") for w in ordered), *docstring_pieces()]))


def build_tokenizer() -> Tokenizer:
    """A word-level tokenizer with GPT-2's byte-level pre-tokenizer and decoder."""
    vocab = {token: i for i, token in enumerate(vocabulary())}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([EOT, UNK])
    return tokenizer
