"""Train the toy Phi model organism: `python -m interp.toy.train [--steps N] [--seed S] [--out DIR]`.

The model is a Hugging Face `PhiForCausalLM` (parallel attention + MLP, partial rotary, one
LayerNorm per block, biased unembedding) trained on four kinds of rows, in fixed shares per batch
(5/16, 8/16, 2/16, 1/16):

- induction: a random prefix, then a random token sequence twice; loss only on the repeat, so the
  model can lower it only by copying what followed the previous occurrence (induction heads);
- IOI (`interp.data.tasks.ioi_grammar`, training frames only): "When Mary and John went to the
  store, John gave a drink to Mary"; loss on every token; a
  third of these use ordinary words in the name slots ("When cat and boat ..., boat gave a drink
  to cat"), which forces a circuit that works by token identity;
- one-name sentences for every name, held-out names included ("Then, Adam went to the park, and
  Adam was happy"), so that every name is known as a name without being seen in IOI;
- docstrings (`interp.data.tasks.docstring`): a clean docstring-task prompt followed by its answer,
  from a different random stream than the task's evaluation pairs.

Deterministic from `--seed` for a given torch build and thread count. Writes `config.json`,
`model.safetensors`, the tokenizer and `training.json` into `--out` (default: the package's
`weights/` folder, which is what `load_model("toy")` reads).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from transformers import PhiConfig, PhiForCausalLM, PreTrainedTokenizerFast

from interp.data.tasks.docstring import sample_pair
from interp.data.tasks.ioi_grammar import sample_ioi
from interp.toy.data import make_name_sentence, make_repeated_tokens
from interp.toy.vocab import (
    D_VOCAB,
    EOT,
    FILLER,
    HELD_OUT_NAMES,
    TRAIN_NAMES,
    TRAIN_TEMPLATES,
    UNK,
    build_tokenizer,
)

WEIGHTS_DIR = Path(__file__).parent / "weights"


def toy_config() -> PhiConfig:
    """The toy architecture: Phi-2's shape rules at a tiny size (d_head 40, rotary on 16 dims)."""
    return PhiConfig(
        vocab_size=D_VOCAB,
        hidden_size=160,
        intermediate_size=640,
        num_hidden_layers=4,
        num_attention_heads=4,
        partial_rotary_factor=0.4,
        max_position_embeddings=128,
        hidden_act="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attention_dropout=0.0,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )


def make_tokenizer() -> PreTrainedTokenizerFast:
    """The toy's word-level tokenizer as a transformers tokenizer."""
    return PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(),
        bos_token=EOT,
        eos_token=EOT,
        unk_token=UNK,
        pad_token=EOT,
        add_prefix_space=False,
    )


def make_batch(
    rng: random.Random, tokenizer: PreTrainedTokenizerFast, n_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and a loss mask (1 where the next token is a training target), right-padded."""
    rows: list[tuple[list[int], list[int]]] = []
    for i in range(n_rows):
        kind = i % 16  # 5/16 induction, 8/16 IOI, 2/16 name sentences, 1/16 docstrings
        if kind < 5:
            ids, repeat_start = make_repeated_tokens(rng)
            mask = [0] * len(ids)
            for pos in range(repeat_start - 1, len(ids) - 1):  # predict each repeated token
                mask[pos] = 1
        else:
            if kind == 15:
                pair = sample_pair(rng)
                text = pair.clean + pair.answer
            elif kind < 13:
                # a third of IOI rows use ordinary words as the "names", so the circuit must work by
                # token identity (which token is repeated), not by features of the training names
                names = FILLER if rng.random() < 1 / 3 else TRAIN_NAMES
                ex = sample_ioi(rng, TRAIN_TEMPLATES, names)
                text = ex.prompt + ex.io
            else:
                text = make_name_sentence(rng, TRAIN_NAMES + HELD_OUT_NAMES)
            ids = tokenizer(text)["input_ids"]
            mask = [1] * (len(ids) - 1) + [0]
        rows.append((ids, mask))
    width = max(len(ids) for ids, _ in rows)
    tokens = torch.zeros(n_rows, width, dtype=torch.long)
    loss_mask = torch.zeros(n_rows, width)
    for r, (ids, mask) in enumerate(rows):
        tokens[r, : len(ids)] = torch.tensor(ids)
        loss_mask[r, : len(mask)] = torch.tensor(mask, dtype=torch.float)
    return tokens, loss_mask


def train(steps: int, seed: int, out: Path, batch_size: int = 64, lr: float = 3e-3) -> dict:
    """Train the toy model from `seed` for `steps`, save it (weights, tokenizer, training.json) to `out`; return the training record."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokenizer = make_tokenizer()
    model = PhiForCausalLM(toy_config())
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.05, 1 - s / steps)
    )
    history = []
    start = time.time()
    for step in range(steps):
        tokens, loss_mask = make_batch(rng, tokenizer, batch_size)
        logits = model(tokens).logits[:, :-1]
        targets = tokens[:, 1:]
        mask = loss_mask[:, :-1]
        losses = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
        )
        loss = (losses * mask.reshape(-1)).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            history.append({"step": step, "loss": round(loss.item(), 4)})
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.time() - start:6.1f}s", flush=True)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "train_seconds": round(time.time() - start, 1),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "loss_history": history,
    }
    (out / "training.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def main() -> None:
    """`python -m interp.toy.train`: train and save the toy model."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--steps", type=int, default=4000, help="optimiser steps")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and data")
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="output directory")
    args = parser.parse_args()
    train(args.steps, args.seed, args.out)


if __name__ == "__main__":
    main()
