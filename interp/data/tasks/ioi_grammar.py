"""IOI sentences written once: the templates, names, places and objects, and the one sampler.

Two template sets:

- `TEMPLATES` and `NAMES`: Wang et al.'s (2022) templates and common first names, for Phi-2 (every
  name, place and object is one GPT-2 BPE token with its leading space).
- The frame grammar, OPENER + "{A} and {B}" + ACTION + CONNECTOR + "{B}" + GIVE + " {A}"
  (8 x 8 x 5 x 8 = 2560 frames), split once into `TRAIN_TEMPLATES` and `HELD_OUT_TEMPLATES` (a
  fixed fifth, never trained on). The toy model is trained on the training frames with
  `GRAMMAR_NAMES` (the toy's vocabulary is built from this grammar) and the `ioi` task measures
  it on the held-out frames. `HELD_OUT_NAMES` never appear in a training IOI sentence.

In every template {A} is the indirect object (the answer) and {B} the subject, mentioned twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

TEMPLATES = [
    "Then, {A} and {B} went to the {PLACE}. {B} gave a {OBJ} to",
    "Then, {A} and {B} had a lot of fun at the {PLACE}. {B} gave a {OBJ} to",
    "Then, {A} and {B} were working at the {PLACE}. {B} decided to give a {OBJ} to",
    "Then, {A} and {B} had a long argument, and afterwards {B} said to",
    "After {A} and {B} went to the {PLACE}, {B} gave a {OBJ} to",
    "When {A} and {B} got a {OBJ} at the {PLACE}, {B} decided to give it to",
    "While {A} and {B} were working at the {PLACE}, {B} gave a {OBJ} to",
    "Friends {A} and {B} found a {OBJ} at the {PLACE}. {B} gave it to",
    "The {PLACE} {A} and {B} went to had a {OBJ}. {B} gave it to",
    "When {A} and {B} went to the {PLACE}, {B} gave a {OBJ} to",
]
NAMES = [
    "Mary", "John", "Tom", "James", "Dan", "Martin", "Amy", "Kate", "Lisa", "Paul", "Anna", "Mark",
    "Laura", "Peter", "Rose", "Sam", "Emma", "Jack", "Max", "Jane", "Ben", "Alice", "David", "Sarah",
    "Mike", "Grace", "Luke", "Robert", "William", "Richard", "Thomas", "Charles", "Daniel", "Kevin",
    "George", "Edward", "Ryan", "Jason", "Eric", "Scott", "Frank", "Henry", "Linda", "Jessica", "Karen",
    "Nancy", "Michelle", "Rachel", "Maria", "Julie",
]  # fmt: skip
PLACES = ["store", "garden", "school", "park", "office", "station", "market", "house", "beach", "river"]
OBJECTS = ["drink", "book", "ring", "kiss", "letter", "bone", "basketball", "computer", "snack", "necklace"]


GRAMMAR_NAMES = [
    "Mary", "John", "Tom", "James", "Dan", "Sid", "Martin", "Amy", "Kate", "Lisa", "Paul", "Anna",
    "Mark", "Laura", "Peter", "Rose", "Sam", "Emma", "Jack", "Claire", "Max", "Jane", "Ben", "Alice",
    "David", "Sarah", "Mike", "Grace", "Luke", "Ruth", "Robert", "William", "Richard", "Joseph",
    "Thomas", "Charles", "Chris", "Daniel", "Matthew", "Anthony", "Steven", "Andrew", "Kevin", "Brian",
    "George", "Edward", "Ryan", "Jason", "Jeff", "Gary", "Eric", "Justin", "Scott", "Frank", "Ray",
    "Greg", "Sean", "Jerry", "Henry", "Nathan", "Linda", "Barbara", "Jessica", "Karen", "Nancy",
    "Betty", "Margaret", "Sandra", "Ashley", "Kim", "Donna", "Michelle", "Carol", "Amanda", "Rachel",
    "Janet", "Maria", "Heather", "Julie", "Kelly",
]  # fmt: skip
HELD_OUT_NAMES = ["Adam", "Helen", "Tim", "Susan", "Paula", "Ed", "Jenny", "Carl", "Victor", "Hannah"]


# A frame is OPENER + "{A} and {B}" + ACTION + CONNECTOR + "{B}" + GIVE + " {A}", where {A} is
# the indirect object (the answer) and {B} the subject, mentioned twice. 8 x 8 x 5 x 8 = 2560 frames;
# a fixed fifth of them is held out (never trained on), though each of their words is trained in others.
OPENERS = ["When", "After", "While", "Then,", "Once", "Afterwards", "So", "Later,"]
ACTIONS = [
    "went to the {PLACE}", "were working at the {PLACE}", "got a {OBJ} at the {PLACE}",
    "had a long argument", "found a {OBJ} at the {PLACE}", "were at the {PLACE}",
    "met at the {PLACE}", "walked to the {PLACE}",
]  # fmt: skip
CONNECTORS = [",", ".", ", and", ", and then", ". Later,"]
GIVES = [
    "gave a {OBJ} to", "handed a {OBJ} to", "brought a {OBJ} to", "said to",
    "decided to give it to", "threw a {OBJ} to", "showed a {OBJ} to", "sent a {OBJ} to",
]  # fmt: skip


def _all_templates() -> list[str]:
    return [
        f"{opener} {{A}} and {{B}} {action}{connector} {{B}} {give}"
        for opener in OPENERS
        for action in ACTIONS
        for connector in CONNECTORS
        for give in GIVES
    ]


def _split_templates() -> tuple[list[str], list[str]]:
    templates = _all_templates()
    order = random.Random(1234).sample(range(len(templates)), len(templates))
    held = set(order[: len(templates) // 5])
    return (
        [t for i, t in enumerate(templates) if i not in held],
        [t for i, t in enumerate(templates) if i in held],
    )


TRAIN_TEMPLATES, HELD_OUT_TEMPLATES = _split_templates()


@dataclass(frozen=True)
class IOIExample:
    """One IOI pair: `prompt` ends just before the answer; `io` is the answer, `s` the subject.

    `corrupted` is the prompt with the second mention of the subject replaced by the indirect
    object, which flips the answer and keeps the token length.
    """

    prompt: str
    corrupted: str
    io: str
    s: str
    template: str


def sample_ioi(
    rng: random.Random,
    templates: list[str],
    names: list[str],
    places: list[str] = PLACES,
    objects: list[str] = OBJECTS,
) -> IOIExample:
    """Fill a random template with two distinct names, in ABB or BAB order at random."""
    io, s = rng.sample(names, 2)
    template = rng.choice(templates)
    if rng.random() < 0.5:  # BABA order: the subject is mentioned first
        template = template.replace("{A} and {B}", "{B} and {A}", 1)
    fill = dict(PLACE=rng.choice(places), OBJ=rng.choice(objects))
    head, tail = template.rsplit("{B}", 1)
    return IOIExample(
        prompt=template.format(A=io, B=s, **fill),
        corrupted=(head + "{A}" + tail).format(A=io, B=s, **fill),
        io=" " + io,
        s=" " + s,
        template=template,
    )
