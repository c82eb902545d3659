"""Edge-level circuit discovery: cost of EAP / EAP-IG against one forward + backward, and exact edge
patching against a straightforward hook-per-edge loop, side by side in one process.

    python benchmarks/circuits.py                                   # mid config, CPU, float32
    python benchmarks/circuits.py --config phi2 --device cuda --dtype bfloat16 --prompts 8 --pos 64

Printed, per run: the time of one plain forward + backward of the same batch (functional forward,
autograd, the metric's gradient with respect to the embedding), EAP's and EAP-IG's times and their
ratios to it (targets: EAP <= 1.5x, EAP-IG about steps + 1), peak device memory on CUDA, exact edge
patching's edges per second over every edge (or `--exact-edges` of EAP-IG's top edges) and a hook
loop's (one hooked forward of the bridge per edge, measured on `--loop-edges` edges), and their ratio.
Random weights (Phi-2's init std 0.02 at full size): the numbers speak about cost, not about Phi-2.

With `--faithfulness`, instead: the time of `faithfulness_curve` (MIB's ten circuit sizes, EAP's scores)
in each ablation mode, on the head graph (`CircuitEvaluator`), and the curve's CMD.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from patching import CONFIGS, best_of, random_pairs, random_phi_dir  # noqa: E402

from interp.engine.forward import PhiWeights, run_with_cache  # noqa: E402
from interp.engine.receiver_gradients import sender_run  # noqa: E402
from interp.methods.circuits.circuit import faithfulness_curve  # noqa: E402
from interp.methods.circuits.edge_attribution import eap, eap_ig  # noqa: E402
from interp.methods.circuits.edge_patching import edge_patch, sender_outputs  # noqa: E402
from interp.methods.contrastive import contrast  # noqa: E402
from interp.model.loading import load_model  # noqa: E402


def eap_floor(model, pairs, core):
    """What EAP cannot avoid: the source run's forward (no gradient) plus the reference forward + backward."""
    w = PhiWeights.from_model(model)
    with torch.no_grad():
        sender_run(w, w.W_E[pairs.corrupted_tokens.to(model.cfg.device)])
    forward_backward(model, pairs, core)


def block_work(graph, n_layers: int, n_pos: int, first: int) -> float:
    """Forward passes' worth of work exact edge patching does over every edge (the engine's work model,
    counting a block's projections and MLP, 12 d_model^2 per position with d_mlp = 4 d_model): an edge
    into layer l's receivers reruns blocks l+1 .. L-2 from position `first`, and of block L-1 the keys
    and values from `first` (4 d_model^2 per position) and the rest at the final position only; an edge
    into the logits or the last layer reruns nothing."""
    moving = (n_pos - first) / n_pos
    blocks = 0.0
    for r in graph.edge_index[:, 1].tolist():
        entry = min(graph.receivers[r].layer + 1, n_layers)
        if entry < n_layers:
            blocks += (n_layers - 1 - entry) * moving + (4 * moving + 8 / n_pos) / 12
    return blocks / n_layers


def forward_backward(model, pairs, core):
    """The reference cost: one forward with autograd and one backward of the summed metric."""
    w = PhiWeights.from_model(model)
    tokens = pairs.clean_tokens.to(model.cfg.device)
    with torch.enable_grad():
        run = run_with_cache(w, tokens, grad=True)
        torch.autograd.grad(core.measure(run.final_logits, core.everyone).sum(), run.resid_pre[0])


def hook_loop(model, pairs, names: list[str]) -> None:
    """One hooked forward of the bridge per edge: the receiver input gets the sender's corrupted change."""
    core = contrast(model, pairs, direction="noising")
    w = core.weights
    group = core.groups[0]
    deltas = sender_outputs(w, group.corrupted) - sender_outputs(w, group.clean)
    hf = model.original_model
    from interp.methods.circuits.graph import Graph

    graph = Graph(w.n_layers, w.n_heads)
    tokens = pairs.clean_tokens.to(model.cfg.device)
    F = torch.nn.functional
    with torch.no_grad():
        for name in names:
            sender, receiver = graph.edge_index[graph.edge_position(name)].tolist()
            r = graph.receivers[receiver]
            delta = deltas[sender]
            if r.node == "logits":
                hook = (f"blocks.{w.n_layers - 1}.hook_resid_post", lambda x, hook, d=delta: x + d)
            else:
                block = hf.model.layers[r.layer]
                ln = block.input_layernorm
                x = group.clean.resid_pre[r.layer] + delta
                h = F.layer_norm(x, (x.shape[-1],), ln.weight, ln.bias, ln.eps)
                if r.part is None:
                    pre = F.linear(h, block.mlp.fc1.weight, block.mlp.fc1.bias)
                    hook = (f"blocks.{r.layer}.mlp.hook_pre", lambda act, hook, p=pre: p)
                else:
                    proj = getattr(block.self_attn, f"{r.part}_proj")
                    d = w.d_head
                    changed = F.linear(h, proj.weight, proj.bias)[..., r.head * d : (r.head + 1) * d]

                    def replace(act, hook, c=changed, head=r.head):
                        act = act.clone()
                        act[:, :, head] = c
                        return act

                    hook = (f"blocks.{r.layer}.attn.hook_{r.part}", replace)
            with model.hooks(fwd_hooks=[hook]):
                model(tokens)


def faithfulness(model, pairs, sync, repeat: int) -> None:
    """faithfulness_curve's time (the runs, the ablated values and ten circuits) in each mode."""
    scores = eap(model, pairs)
    for mode in ("counterfactual", "mean", "zero"):
        faithfulness_curve(model, pairs, scores, mode=mode)  # warm-up
        seconds, curve = best_of(
            lambda m=mode: faithfulness_curve(model, pairs, scores, mode=m), sync, repeat
        )
        print(f"faithfulness_curve {mode:<15} {seconds:8.3f} s  CMD {curve.area_from_one:.6f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="mid", choices=list(CONFIGS))
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--pos", type=int, default=24)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--exact-edges", type=int, default=0, help="exact patching of EAP-IG's top N edges (0: all)"
    )
    parser.add_argument("--loop-edges", type=int, default=40, help="edges timed in the hook loop")
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the random model in this directory")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per row (the best is kept)")
    parser.add_argument(
        "--faithfulness", action="store_true", help="time faithfulness_curve per mode instead (see above)"
    )
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    cfg = CONFIGS[args.config]
    with tempfile.TemporaryDirectory() as tmp:
        directory = random_phi_dir(args.keep or Path(tmp), args.config)
        model = load_model(directory, device=args.device, dtype=args.dtype)
    pairs = random_pairs(args.prompts, args.pos, cfg["vocab_size"])
    print(f"torch {torch.__version__}, device {args.device} {torch.cuda.get_device_name() if cuda else ''}, "
          f"{args.dtype}, config {args.config}, batch {args.prompts} x {args.pos} tokens", flush=True)  # fmt: skip
    if args.faithfulness:
        faithfulness(model, pairs, sync, args.repeat)
        return
    core = contrast(model, pairs, keep="logits")
    forward_backward(model, pairs, core)  # warm-up
    base_s, _ = best_of(lambda: forward_backward(model, pairs, core), sync, args.repeat)
    print(f"forward + backward      {base_s:8.3f} s", flush=True)
    floor_s, _ = best_of(lambda: eap_floor(model, pairs, core), sync, args.repeat)
    print(
        f"eap floor               {floor_s:8.3f} s  = {floor_s / base_s:5.2f} x  (source forward + the above)"
    )
    for name, fn in (
        ("eap", lambda: eap(model, pairs)),
        (f"eap_ig({args.steps})", lambda: eap_ig(model, pairs, steps=args.steps)),
    ):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        seconds, scores = best_of(fn, sync, args.repeat)
        memory = f"  peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if cuda else ""
        print(f"{name:<22} {seconds:8.3f} s  = {seconds / base_s:5.2f} x forward+backward  "
              f"({scores.graph.n_edges:,} edges){memory}", flush=True)  # fmt: skip
    edges = None if args.exact_edges == 0 else [n for n, _ in scores.top(args.exact_edges)]
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    seconds, exact = best_of(lambda: edge_patch(model, pairs, edges=edges), sync, 1)
    n = exact.graph.n_edges if edges is None else len(edges)
    memory = f"  peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if cuda else ""
    print(
        f"edge_patch             {seconds:8.3f} s  {n / seconds:10.1f} edges/s ({n:,} edges){memory}",
        flush=True,
    )
    loop_names = exact.graph.edge_names[:: max(1, exact.graph.n_edges // args.loop_edges)][: args.loop_edges]
    loop_s, _ = best_of(lambda: hook_loop(model, pairs, loop_names), sync, 1)
    loop_rate = len(loop_names) / loop_s
    print(f"hook loop              {loop_s:8.3f} s  {loop_rate:10.1f} edges/s ({len(loop_names)} edges)")
    print(f"edge_patch / hook loop  {n / seconds / loop_rate:8.1f} x edges per second")
    if edges is None:
        first = contrast(model, pairs, keep="logits").first_difference(core.groups[0])
        work = block_work(exact.graph, model.cfg.n_layers, args.pos, first)
        print(f"work: {work:.1f} forwards' worth of blocks for {n:,} edges (the loop: {n:,}), "
              f"a {n / work:.1f} x saving by itself (changes start at position {first})")  # fmt: skip


if __name__ == "__main__":
    main()
