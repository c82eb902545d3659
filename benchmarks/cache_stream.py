"""Streaming a cache to disk vs a plain forward pass: throughput ratio, same model, same process.

    python benchmarks/cache_stream.py [--config mid] [--rows 256] [--pos 64] [--batch 32]

Runs the same token dataset (a) through plain forward passes and (b) through `stream_cache`, which
caches every layer's `hook_resid_pre` and `attn.hook_z` and writes safetensors shards atomically.
Prints tokens/s of both and their ratio; the target is >= 50% of plain forward throughput.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from patching import CONFIGS, save_phi_dir  # noqa: E402

from interp.model.cache import stream_cache  # noqa: E402
from interp.model.loading import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="mid", choices=list(CONFIGS))
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--pos", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(save_phi_dir(Path(tmp) / "m", **CONFIGS[args.config]), device=args.device)
        model.eval()
        tokens = torch.randint(2, 140, (args.rows, args.pos), generator=torch.Generator().manual_seed(0))
        names = [f"blocks.{layer}.hook_resid_pre" for layer in range(model.cfg.n_layers)]
        names += [f"blocks.{layer}.attn.hook_z" for layer in range(model.cfg.n_layers)]
        with torch.no_grad():
            model(tokens[: args.batch].to(args.device))  # warm-up
            start = time.perf_counter()
            for i in range(0, args.rows, args.batch):
                model(tokens[i : i + args.batch].to(args.device))
            plain = time.perf_counter() - start
        start = time.perf_counter()
        disk = stream_cache(model, tokens, names, Path(tmp) / "cache", batch_size=args.batch)
        streamed = time.perf_counter() - start
        size = sum(p.stat().st_size for p in (Path(tmp) / "cache").iterdir())
        n_shards = len(disk)
    n_tokens = args.rows * args.pos
    print(
        f"config {args.config}, {args.rows} x {args.pos} tokens, batch {args.batch}, {len(names)} hooks, {n_shards} shards, {size / 1024**2:.0f} MiB written"
    )
    print(f"plain forward  {n_tokens / plain:10.0f} tokens/s")
    print(f"stream_cache   {n_tokens / streamed:10.0f} tokens/s")
    print(f"ratio          {plain / streamed:10.2f}  (target >= 0.50)")


if __name__ == "__main__":
    main()
