"""Dictionary training throughput: interp's `train_from_model` vs eai-sparsify's `Trainer`, same process.

    python benchmarks/dictionaries_training.py [--config mid] [--rows 256] [--pos 128] [--rows-per-step 8]
                                               [--expansion 8] [--k 32] [--lr 1e-3] [--device cpu]

Both train a TopK SAE on the same random Phi (`benchmarks/patching.py`'s configs, loaded from one
directory: ours through `load_model`, sparsify's as the Hugging Face model), at the same hook
(`blocks.2.hook_resid_pre` = the output of sparsify's hookpoint `layers.1`), width, k, batch
(`rows-per-step` rows of `pos` tokens per optimiser step: sparsify's `batch_size`, our
`batch_tokens`), learning rate (Adam; a 10-step linear warm-up, then a linear decay to 0 over the other steps; AuxK off on
both, as sparsify's default), on the same token rows. Each is timed from its first forward to its
last optimiser step (model loading excluded), best of `--repeat`. Printed: tokens/s of each, the
ratio, and the explained variance each SAE reaches on held-out rows' activations, so that the
throughput is compared at (at least) equal quality. sparsify streams each forward's activations
straight into a step; we pass them through a shuffling buffer (`--buffer-rows` rows, default 4
steps) and stop the forward after the last block needed.

eai-sparsify is an optional dependency (`pip install -e '.[bench]'`; it installs beside us with
`--no-deps`: natsort, schedulefree, simple-parsing and docstring-parser are its only packages we lack).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from patching import CONFIGS, random_phi_dir  # noqa: E402

from interp.dictionaries import evaluate_dictionary, make_dictionary, train_from_model  # noqa: E402
from interp.dictionaries.streaming import model_activations  # noqa: E402
from interp.model.loading import load_model  # noqa: E402

HOOK, SPARSIFY_HOOK = "blocks.2.hook_resid_pre", "layers.1"


def explained_variance(x: torch.Tensor, out: torch.Tensor) -> float:
    return float(1 - (x - out).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def train_ours(model, tokens, args, d_model: int):
    sae = make_dictionary(
        "topk", d_in=d_model, d_sae=args.expansion * d_model, k=args.k, hook_name=HOOK, aux_coefficient=0.0
    ).to(args.device)
    step_tokens = args.rows_per_step * args.pos
    start = time.perf_counter()
    train_from_model(
        model,
        tokens,
        [sae],
        model_batch=args.rows_per_step,
        batch_tokens=step_tokens,
        buffer_tokens=args.buffer_rows * args.pos,
        lr=args.lr,
        lr_warmup_steps=10,
        lr_decay_fraction=1
        - 10 / (len(tokens) // args.rows_per_step),  # decays after the warm-up, as sparsify's
        log_every=10**9,
    )
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, sae, sae.training_log[-1]["tokens"]


def train_sparsify(model_dir: Path, tokens, args, save_dir: Path):
    from datasets import Dataset
    from sparsify import SaeConfig, TrainConfig, Trainer
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(args.device).eval()
    dataset = Dataset.from_dict({"input_ids": tokens.tolist()}).with_format("torch")
    cfg = TrainConfig(
        SaeConfig(expansion_factor=args.expansion, k=args.k),
        batch_size=args.rows_per_step,
        optimizer="adam",
        lr=args.lr,
        lr_warmup_steps=10,
        auxk_alpha=0.0,
        hookpoints=[SPARSIFY_HOOK],
        log_to_wandb=False,
        save_every=10**9,
        save_dir=str(save_dir),
        run_name="bench",
    )
    with contextlib.redirect_stdout(io.StringIO()):  # its set-up prints
        trainer = Trainer(cfg, dataset, hf)
        start = time.perf_counter()
        trainer.fit()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    steps = trainer.global_step
    return seconds, trainer.saes[SPARSIFY_HOOK], steps * args.rows_per_step * args.pos


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="mid", choices=list(CONFIGS))
    parser.add_argument("--rows", type=int, default=256, help="training rows")
    parser.add_argument("--pos", type=int, default=128, help="tokens per row")
    parser.add_argument("--rows-per-step", type=int, default=8, help="rows per optimiser step (and forward)")
    parser.add_argument("--buffer-rows", type=int, default=32, help="our shuffling buffer, in rows")
    parser.add_argument("--eval-rows", type=int, default=32)
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = random_phi_dir(Path(tmp), args.config)
        model = load_model(model_dir, device=args.device, dtype="float32")
        d_model = model.cfg.d_model
        vocab = CONFIGS[args.config]["vocab_size"]
        g = torch.Generator().manual_seed(0)
        tokens = torch.randint(2, vocab, (args.rows + args.eval_rows, args.pos), generator=g)
        train, held_out = tokens[: args.rows], tokens[args.rows :]
        held_out_acts = torch.cat(
            [model_activations(model, chunk, [HOOK])[HOOK] for chunk in held_out.split(8)]
        ).to(args.device)
        ours, theirs = [], []
        for _ in range(args.repeat):  # alternated, so machine noise falls on both
            ours.append(train_ours(model, train, args, d_model))
            theirs.append(train_sparsify(model_dir, train, args, Path(tmp) / f"sparsify{len(theirs)}"))
        (t_ours, sae, n_ours), (t_theirs, coder, n_theirs) = (
            min(ours, key=lambda r: r[0]),
            min(theirs, key=lambda r: r[0]),
        )
        with torch.no_grad():
            ev_ours = evaluate_dictionary(sae, held_out_acts).explained_variance
            ev_theirs = explained_variance(held_out_acts, coder(held_out_acts).sae_out)
    print(
        f"config {args.config} (d_model {d_model}), {HOOK}, d_sae {args.expansion * d_model}, k {args.k}, "
        f"{args.rows_per_step * args.pos} tokens per step, {args.rows} x {args.pos} training tokens, "
        f"device {args.device}, torch threads {torch.get_num_threads()}"
    )
    print(
        f"interp    {n_ours / t_ours:10.0f} tokens/s  ({n_ours} tokens, {t_ours:.2f} s)  explained variance {ev_ours:.4f}"
    )
    print(
        f"sparsify  {n_theirs / t_theirs:10.0f} tokens/s  ({n_theirs} tokens, {t_theirs:.2f} s)  explained variance {ev_theirs:.4f}"
    )
    print(
        f"ratio     {(n_ours / t_ours) / (n_theirs / t_theirs):10.2f}  (interp / sparsify tokens/s; target >= 1 at >= equal explained variance)"
    )


if __name__ == "__main__":
    main()
