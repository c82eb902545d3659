"""Local vs Ray backend on the same experiment: wall time and overhead ratio, same machine.

    python benchmarks/ray_overhead.py [--config mid] [--workers 2] [--pairs 32]

Runs an IOI-style experiment (head patching, mean ablation, logit lens) on a random mid-size Phi
through `run_experiment` twice: backend local, then backend ray with `--workers` actors of one CPU
each on a fresh local Ray instance. Prints both times (Ray's includes starting Ray and loading the
model in every actor, reported separately) and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from patching import CONFIGS, WEIGHT_STD, save_phi_dir  # noqa: E402

from interp.runner.config import parse_config  # noqa: E402
from interp.runner.run import run_experiment  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="mid", choices=list(CONFIGS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=32)
    args = parser.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_phi_dir(
            Path(tmp) / "model", weight_std=WEIGHT_STD[args.config], **CONFIGS[args.config]
        )
        config = parse_config(
            {
                "model": {"source": str(model_dir)},
                "task": {"name": "induction", "n_pairs": args.pairs, "seq_len": 12},
                "batch_size": 4,
                "analysis": [
                    {"kind": "patch_head_out"},
                    {"kind": "ablate_head", "method": "mean"},
                    {"kind": "logit_lens"},
                ],
            }
        )
        start = time.perf_counter()
        run_experiment(config, Path(tmp) / "local", progress=False)
        local_s = time.perf_counter() - start

        start = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        startup_s = time.perf_counter() - start
        run_experiment(
            config,
            Path(tmp) / "ray",
            progress=False,
            backend="ray",
            backend_options={"num_workers": args.workers},
        )
        ray_s = time.perf_counter() - start
        ray.shutdown()
    print(f"{args.config}, {args.pairs} pairs, torch threads {torch.get_num_threads()}")
    print(f"local backend           {local_s:7.1f}s")
    print(f"ray backend ({args.workers} actors)   {ray_s:7.1f}s  (of which starting Ray {startup_s:.1f}s)")
    print(f"overhead ratio ray/local {ray_s / local_s:6.2f}")


if __name__ == "__main__":
    main()
