"""Peak memory of loading full-size Phi-2 (random weights): interp raw/folded vs transformer-lens.

    python benchmarks/load_memory.py [--layers 32] [--limit-gb 22] [--modes raw folded tl_raw tl_folded]

Builds the published Phi-2 architecture (32 layers, d_model 2560, 32 heads, d_mlp 10240,
vocab 51200, partial rotary 0.4, gelu_new) with random float32 weights, saved as sharded
safetensors in a temporary directory (~11 GB), then loads it in a fresh process per mode and
prints peak RSS / weight bytes side by side:

- raw:       interp.load_model(dir, weights="raw")
- folded:    interp.load_model(dir, weights="folded")   (in-place folding)
- tl_raw:    TransformerBridge.boot_transformers(dir)
- tl_folded: the same, then enable_compatibility_mode() (transformer-lens's folding)

A watchdog kills a child whose RSS passes --limit-gb so that a mode which would exhaust the
machine is reported as such instead of taking the machine down. Targets: raw <= 1.3x,
folded <= 1.6x weight bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch

MODES = ("raw", "folded", "tl_raw", "tl_folded")
TARGETS = {"raw": 1.3, "folded": 1.6}
SHARD_BYTES = 2 * 1024**3


def phi2_config(n_layers: int):
    from transformers import PhiConfig

    return PhiConfig(
        vocab_size=51200,
        hidden_size=2560,
        intermediate_size=10240,
        num_hidden_layers=n_layers,
        num_attention_heads=32,
        partial_rotary_factor=0.4,
        max_position_embeddings=2048,
        hidden_act="gelu_new",
        layer_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=50256,
        eos_token_id=50256,
    )


def write_random_phi2(directory: Path, n_layers: int) -> int:
    """Write config, sharded random float32 weights and a tokenizer; return the weight bytes."""
    from safetensors.torch import save_file
    from transformers import PhiForCausalLM

    from interp.toy.train import make_tokenizer

    config = phi2_config(n_layers)
    with torch.device("meta"):
        shapes = {name: p.shape for name, p in PhiForCausalLM(config).named_parameters()}
    generator = torch.Generator().manual_seed(0)
    shard: dict[str, torch.Tensor] = {}
    index: dict[str, str] = {}
    total = shard_bytes = 0
    n_shard = 0

    def flush() -> None:
        nonlocal shard, shard_bytes, n_shard
        if shard:
            name = f"model-{n_shard:05d}.safetensors"
            save_file(shard, directory / name, metadata={"format": "pt"})
            index.update({key: name for key in shard})
            n_shard += 1
            shard, shard_bytes = {}, 0

    for name, shape in shapes.items():
        if "layernorm" in name and name.endswith("weight"):
            tensor = 1 + 0.1 * torch.randn(shape, generator=generator)
        else:
            tensor = 0.02 * torch.randn(shape, generator=generator)
        shard[name] = tensor
        nbytes = tensor.numel() * tensor.element_size()
        shard_bytes += nbytes
        total += nbytes
        if shard_bytes >= SHARD_BYTES:
            flush()
    flush()
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": index})
    )
    config.architectures = ["PhiForCausalLM"]
    config.save_pretrained(directory)
    make_tokenizer().save_pretrained(directory)
    return total


def child(mode: str, directory: str) -> None:
    """Load once in this process, run a forward pass, print peak RSS as JSON."""
    start = time.time()
    tokens = torch.tensor([[2, 3, 4, 5, 6, 7, 8, 9]])
    if mode in ("raw", "folded"):
        from interp.model.loading import load_model

        model = load_model(directory, device="cpu", dtype="float32", weights=mode)
    else:
        from transformer_lens.model_bridge import TransformerBridge

        model = TransformerBridge.boot_transformers(directory, device="cpu", dtype=torch.float32)
        if mode == "tl_folded":
            model.enable_compatibility_mode(disable_warnings=True)
    with torch.no_grad():
        finite = bool(torch.isfinite(model(tokens)).all())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_rss": peak, "seconds": round(time.time() - start, 1), "finite": finite}))


def measure(mode: str, directory: Path, limit_bytes: int) -> dict:
    """Run `child` in a fresh process; kill it if its RSS passes the limit."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", mode, str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watched = psutil.Process(process.pid)
    seen = 0
    while process.poll() is None:
        try:
            seen = max(seen, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        if seen > limit_bytes:
            process.kill()
            process.wait()
            return {"status": f"killed: RSS passed {limit_bytes / 1024**3:.0f} GB", "peak_rss": seen}
        time.sleep(0.05)
    out, err = process.communicate()
    if process.returncode != 0:
        return {
            "status": f"failed (exit {process.returncode}): {err.strip().splitlines()[-1:]}",
            "peak_rss": seen,
        }
    result = json.loads(out.strip().splitlines()[-1])
    result["status"] = "ok" if result["finite"] else "ok but non-finite logits"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=32, help="number of layers (32 = Phi-2)")
    parser.add_argument("--limit-gb", type=float, default=22.0, help="kill a load whose RSS passes this")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--dir", type=Path, help="reuse a directory written by an earlier run")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="phi2-random-", dir=os.environ.get("BENCH_TMP")) as tmp:
        directory = args.dir or Path(tmp)
        if args.dir is None:
            t0 = time.time()
            weight_bytes = write_random_phi2(directory, args.layers)
            print(f"wrote {weight_bytes / 1024**3:.2f} GiB of float32 weights in {time.time() - t0:.0f}s")
        else:
            weight_bytes = json.loads((directory / "model.safetensors.index.json").read_text())["metadata"][
                "total_size"
            ]
        print(
            f"machine: {psutil.virtual_memory().total / 1024**3:.1f} GiB RAM, {os.cpu_count()} CPUs; torch {torch.__version__}"
        )
        print(f"{'mode':<10} {'peak RSS GiB':>12} {'ratio':>7} {'target':>7} {'seconds':>8}  status")
        for mode in args.modes:
            result = measure(mode, directory, int(args.limit_gb * 1024**3))
            ratio = result["peak_rss"] / weight_bytes
            target = f"<= {TARGETS[mode]}" if mode in TARGETS else ""
            print(
                f"{mode:<10} {result['peak_rss'] / 1024**3:>12.2f} {ratio:>7.2f} {target:>7} "
                f"{result.get('seconds', ''):>8}  {result['status']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
