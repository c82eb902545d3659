"""Attribution graph time against its floor: the batched backward passes it cannot avoid.

    python benchmarks/attribution_graph.py                       # mid config, CPU, float32
    python benchmarks/attribution_graph.py --pos 32 --k 16 --batch 128
    python benchmarks/attribution_graph.py --config phi2 --device cuda --expansion 16 --pos 64 --max-features 8192

A random Phi of the config (as benchmarks/patching.py) and random TopK transcoders (`--expansion` x d_model
latents, `--k` active per position, reading ln1.hook_normalized, writing hook_mlp_out). Every active
feature and logit is a target of the graph once, so `ceil(targets / batch)` backward passes of the frozen
model are unavoidable: the *floor* is those passes alone, timed bare (the same injections, the same
retained forward, nothing computed from their gradients). The graph time is all of `attribution_graph`
(the real forward, the frozen forward, the passes, the edges dotted out of the gradients, the bias terms).
Target: graph / floor <= 1.5. Also printed: peak memory (CUDA) and the graph's size. With
`--max-features` the graph attributes only that many features (plus the logits), and the floor is the
passes of those targets (the rounds that choose them by influence are part of the graph's time).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from patching import CONFIGS, random_phi_dir  # noqa: E402

from interp.dictionaries import make_dictionary  # noqa: E402
from interp.methods.graphs.attribution import _FrozenPass, attribution_graph, logit_vectors  # noqa: E402
from interp.methods.graphs.replacement import replacement_model  # noqa: E402
from interp.model.loading import load_model  # noqa: E402


def transcoders(model, expansion: int, k: int, device: str) -> list:
    d = model.cfg.d_model
    out = []
    for layer in range(model.cfg.n_layers):
        tc = make_dictionary(
            "topk", d_in=d, d_sae=expansion * d, k=k, kind="transcoder", seed=layer,
            hook_name=f"blocks.{layer}.ln1.hook_normalized", hook_name_out=f"blocks.{layer}.hook_mlp_out",
        )  # fmt: skip
        with torch.no_grad():
            tc.W_dec.mul_(0.1)
        out.append(tc.to(device))
    return out


def floor_time(model, tokens, tcs, batch: int, sync, graph) -> tuple[float, int]:
    """The bare backward passes of `graph`'s targets (its feature nodes and logits): (seconds, passes)."""
    rm = replacement_model(model, tokens, tcs)
    index = {tuple(f): i for i, f in enumerate(rm.active.tolist())}
    chosen = torch.tensor([index[tuple(f)] for f in graph.active.tolist()], dtype=torch.long)
    logit_tokens = graph.logit_tokens.to(rm.device)
    n_logits = len(logit_tokens)
    layers = torch.cat([rm.active[chosen, 0], torch.full((n_logits,), rm.n_layers)])
    positions = torch.cat([rm.active[chosen, 1], torch.full((n_logits,), rm.n_pos - 1)])
    inject = torch.cat([rm.encoder_vectors()[chosen.to(rm.device)], logit_vectors(rm, logit_tokens)])
    passes = _FrozenPass(rm, batch)
    sync()
    start = time.perf_counter()
    n = 0
    for first in range(0, len(layers), batch):
        last = first + batch
        passes.backward(layers[first:last], positions[first:last], inject[first:last])
        n += 1
    sync()
    return time.perf_counter() - start, n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="mid", choices=list(CONFIGS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--pos", type=int, default=24, help="prompt tokens")
    parser.add_argument("--expansion", type=int, default=8, help="latents per d_model")
    parser.add_argument("--k", type=int, default=16, help="active latents per position (TopK)")
    parser.add_argument("--batch", type=int, default=64, help="targets per backward pass")
    parser.add_argument("--max-features", type=int, help="max_feature_nodes (the graph's feature nodes)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="a folder to keep the random model in")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(
            random_phi_dir(args.keep or Path(tmp), args.config), device=args.device, dtype=args.dtype
        )
    tcs = transcoders(model, args.expansion, args.k, args.device)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(2, min(model.cfg.d_vocab, 1000), (args.pos,), generator=g)
    best_graph, best_floor, graph, n_passes = float("inf"), float("inf"), None, 0
    for _ in range(args.repeat):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        sync()
        start = time.perf_counter()
        graph = attribution_graph(
            model, tokens, tcs, batch_size=args.batch, max_feature_nodes=args.max_features
        )
        sync()
        best_graph = min(best_graph, time.perf_counter() - start)
        floor, n_passes = floor_time(model, tokens, tcs, args.batch, sync, graph)
        best_floor = min(best_floor, floor)
    peak = f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if cuda else ""
    print(
        f"{args.config}, {args.device} {args.dtype}, {args.pos} tokens, {model.cfg.n_layers} layers, "
        f"{args.expansion}x transcoders (k={args.k}): {graph.n_features} features, {graph.n_logits} logits, "
        f"{graph.n_nodes} nodes; batch {args.batch}: {n_passes} backward passes"
    )
    print(
        f"graph {best_graph:.3f} s, floor {best_floor:.3f} s (the passes alone): "
        f"{best_graph / best_floor:.2f}x the floor (target <= 1.5){peak}"
    )


if __name__ == "__main__":
    main()
