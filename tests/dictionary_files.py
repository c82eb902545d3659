"""Saved dictionaries and text corpora for the toy model, written once per session to a temporary
folder: what configs with `dictionaries = [...]` / `files = [...]` point at in tests; and a second
registered corpus (`"test-sentences"`, besides the toy's own) for `corpus = ...`."""

from __future__ import annotations

import functools
import json
import random
import tempfile
from pathlib import Path

import torch

from interp.data.corpus import register_corpus


def toy_dictionary(kind: str = "sae", layer: int = 2, seed: int = 0, d_sae: int = 64):
    """A random TopK dictionary on the toy (d_model 160) whose latents fire."""
    from interp.dictionaries import make_dictionary

    if kind == "sae":
        d = make_dictionary(
            "topk", d_in=160, d_sae=d_sae, k=4, hook_name=f"blocks.{layer}.hook_resid_pre", seed=seed
        )
    else:
        d = make_dictionary(
            "topk", d_in=160, d_sae=d_sae, k=4, kind=kind, seed=seed,
            hook_name=f"blocks.{layer}.ln1.hook_normalized", hook_name_out=f"blocks.{layer}.hook_mlp_out",
        )  # fmt: skip
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        d.b_enc.copy_(0.3 + 0.1 * torch.randn(d_sae, generator=generator))
    return d


def toy_text(n_rows: int, seed: int) -> str:
    """Text of the toy's own training mixture (its word-level vocabulary), one row per line."""
    from interp.toy.train import make_batch, make_tokenizer

    tokenizer = make_tokenizer()
    tokens, _ = make_batch(random.Random(seed), tokenizer, n_rows)
    return "\n".join(tokenizer.decode([t for t in row.tolist() if t != 0]) for row in tokens)


@register_corpus("test-sentences")
def test_sentences(seed: int = 0):
    """Toy-vocabulary sentences, one document each, from a stream fixed by `seed`."""
    while True:
        yield from toy_text(16, seed).split("\n")
        seed += 1


@functools.cache
def saved() -> dict[str, Path]:
    """Paths: `sae` and `sae_b` (SAEs on blocks.2 and blocks.1), `transcoder`, `wide` (d_in 100: refused
    by the toy), `corpus` and `corpus_b` (.txt files), `corpus_jsonl` (a .jsonl file whose rows hold
    different text in `text` and `body`)."""
    from interp.dictionaries import make_dictionary, save_dictionary

    root = Path(tempfile.mkdtemp(prefix="interp-dictionaries-"))
    paths = {
        "sae": save_dictionary(toy_dictionary("sae", 2, seed=0), root / "sae"),
        "sae_b": save_dictionary(toy_dictionary("sae", 1, seed=3), root / "sae_b"),
        "transcoder": save_dictionary(toy_dictionary("transcoder", 1, seed=5), root / "transcoder"),
        "wide": save_dictionary(
            make_dictionary("topk", d_in=100, d_sae=16, k=2, hook_name="blocks.1.hook_resid_pre"),
            root / "wide",
        ),
    }
    for name, seed in (("corpus", 0), ("corpus_b", 1)):
        path = root / f"{name}.txt"
        path.write_text(toy_text(24, seed), encoding="utf-8")
        paths[name] = path
    rows = zip(toy_text(3, 5).split("\n"), toy_text(3, 6).split("\n"), strict=True)
    paths["corpus_jsonl"] = root / "corpus.jsonl"
    paths["corpus_jsonl"].write_text(
        "".join(json.dumps({"text": a, "body": b}) + "\n" for a, b in rows), encoding="utf-8"
    )
    return {k: Path(v) for k, v in paths.items()}
