"""Full-size Phi-2 architecture (random weights) on a GPU: load, forward speed, memory, fp32 vs bf16.

    python benchmarks/gpu_phi2.py [--layers 32] [--batch 8] [--seq 128] [--out results.json]

For each dtype (float32, bfloat16), side by side in one process:
- `interp.load_model(dir, device="cuda", dtype=...)` load time and GPU memory after loading;
- forward time of our bridge vs plain Hugging Face `PhiForCausalLM` (eager attention) on the
  same weights and tokens: the bridge's hook overhead as a ratio;
- `run_with_cache` of every layer's `hook_resid_pre` vs a plain forward;
- folded vs raw log-probs, and bfloat16 vs float32 log-probs (max |difference|), all finite.
Weights are random, so no number here says anything about Phi-2's behaviour, only about cost
and numerics of the architecture at its real size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from load_memory import write_random_phi2  # noqa: E402


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def gib_allocated(peak: bool = False) -> float:
    if not torch.cuda.is_available():
        return float("nan")
    value = torch.cuda.max_memory_allocated() if peak else torch.cuda.memory_allocated()
    return round(value / 1024**3, 2)


def timed(fn, repeats: int = 5) -> float:
    """Median seconds of `fn()` after two warm-up calls, synchronising the GPU."""
    for _ in range(2):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(directory: Path, batch: int, seq: int, out: Path, device: str = "cuda") -> dict:
    from transformers import PhiForCausalLM

    from interp.model.loading import load_model

    name = torch.cuda.get_device_name(0) if device == "cuda" else device
    results: dict = {"device": name, "torch": torch.__version__, "batch": batch, "seq": seq}
    tokens = torch.randint(2, 130, (batch, seq), generator=torch.Generator().manual_seed(0)).to(device)
    cuda = device == "cuda"
    log_probs = {}
    for dtype in ("float32", "bfloat16"):
        row: dict = {}
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        model = load_model(directory, device=device, dtype=dtype, weights="raw")
        row["load_seconds"] = round(time.perf_counter() - start, 1)
        row["gpu_gib_after_load"] = gib_allocated()
        with torch.no_grad():
            logits = model(tokens)
            row["finite"] = bool(torch.isfinite(logits).all())
            log_probs[dtype] = logits[:, -1].float().log_softmax(-1).cpu()
            del logits
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            row["bridge_forward_s"] = round(timed(lambda m=model: m(tokens)), 4)
            row["gpu_peak_gib_forward"] = gib_allocated(peak=True)
            names = [f"blocks.{layer}.hook_resid_pre" for layer in range(model.cfg.n_layers)]
            row["cache_resid_pre_s"] = round(
                timed(lambda m=model, n=names: m.run_with_cache(tokens, names_filter=n)), 4
            )
        # the bridge replaced the HF model's submodules with its own; time HF on a fresh copy
        del model
        if cuda:
            torch.cuda.empty_cache()
        reference = (
            PhiForCausalLM.from_pretrained(
                directory, dtype=getattr(torch, dtype), attn_implementation="eager"
            )
            .to(device)
            .eval()
        )
        with torch.no_grad():
            row["hf_forward_s"] = round(timed(lambda r=reference: r(tokens).logits), 4)
            hf_log_probs = reference(tokens).logits[:, -1].float().log_softmax(-1).cpu()
        row["bridge_vs_hf_time_ratio"] = round(row["bridge_forward_s"] / row["hf_forward_s"], 2)
        row["bridge_vs_hf_max_logprob_diff"] = float((hf_log_probs - log_probs[dtype]).abs().max())
        row["tokens_per_s_bridge"] = round(batch * seq / row["bridge_forward_s"])
        del reference
        if cuda:
            torch.cuda.empty_cache()
        folded = load_model(directory, device=device, dtype=dtype, weights="folded")
        with torch.no_grad():
            folded_lp = folded(tokens)[:, -1].float().log_softmax(-1).cpu()
        row["folded_vs_raw_max_logprob_diff"] = float((folded_lp - log_probs[dtype]).abs().max())
        del folded
        if cuda:
            torch.cuda.empty_cache()
        results[dtype] = row
        out.write_text(json.dumps(results, indent=1))
        print(dtype, json.dumps(row), flush=True)
    results["bf16_vs_fp32_max_logprob_diff"] = float(
        (log_probs["bfloat16"] - log_probs["float32"]).abs().max()
    )
    out.write_text(json.dumps(results, indent=1))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--dir", type=Path, help="a directory written by load_memory.write_random_phi2")
    parser.add_argument("--out", type=Path, default=Path("gpu_phi2.json"))
    parser.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a dry run)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("needs a CUDA device (or --device cpu for a dry run)")
    with tempfile.TemporaryDirectory(prefix="phi2-random-") as tmp:
        directory = args.dir or Path(tmp)
        if args.dir is None:
            write_random_phi2(directory, args.layers)
        results = run(directory, args.batch, args.seq, args.out, args.device)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
