"""Ablation sweep over every head: the batched engine vs one forward per head with `ablate()`.

    python benchmarks/ablation.py [--config mid] [--prompts 8] [--pos 24] [--method mean]

Both compute the metric change of mean-ablating each head alone on the same prompts; the script
prints both times, the speed-up and the largest difference between the two results.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from patching import CONFIGS, WEIGHT_STD, random_pairs, save_phi_dir  # noqa: E402

from interp.data.metrics import make_metric  # noqa: E402
from interp.methods.ablation import Component, ablate, ablation_sweep  # noqa: E402
from interp.model.loading import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="mid", choices=list(CONFIGS))
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--pos", type=int, default=24)
    parser.add_argument("--method", default="mean", choices=["zero", "mean"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = save_phi_dir(Path(tmp) / "m", weight_std=WEIGHT_STD[args.config], **CONFIGS[args.config])
        model = load_model(directory, device=args.device)
    pairs = random_pairs(args.prompts, args.pos, CONFIGS[args.config]["vocab_size"])
    metric = make_metric("logit_diff", pairs.answer, pairs.wrong)
    rows = torch.arange(args.prompts)
    tokens = pairs.clean_tokens.to(args.device)

    ablation_sweep(model, pairs, args.method)  # warm-up
    start = time.perf_counter()
    batched = ablation_sweep(model, pairs, args.method).values
    batched_s = time.perf_counter() - start

    start = time.perf_counter()
    with torch.no_grad():
        clean = metric(model(tokens)[:, -1], rows).mean()
        looped = torch.zeros_like(batched)
        for layer in range(model.cfg.n_layers):
            for head in range(model.cfg.n_heads):
                reference = pairs.corrupted_tokens
                with ablate(model, [Component("head", layer, head)], args.method, reference=reference):
                    looped[layer, head] = metric(model(tokens)[:, -1], rows).mean() - clean
    looped_s = time.perf_counter() - start
    diff = (batched - looped).abs().max().item()
    print(
        f"{args.config}: {model.cfg.n_layers * model.cfg.n_heads} heads, {args.prompts} x {args.pos} tokens, "
        f"{args.method} ablation\n  one forward per head {looped_s:7.2f}s\n  batched sweep        {batched_s:7.2f}s\n"
        f"  speed-up {looped_s / batched_s:.1f}x, max|diff| {diff:.1e}"
    )


if __name__ == "__main__":
    main()
