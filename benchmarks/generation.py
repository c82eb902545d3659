"""Tokens per second of `interp.generate` vs Hugging Face `generate` on the same model and batch, greedy,
with and without an intervention (a steering vector at a middle layer; HF gets the same one through a
forward pre-hook on that layer), side by side in one process. Target: <= 1.3x HF's time.

    python benchmarks/generation.py                     # mid config, CPU, float32
    python benchmarks/generation.py --config phi2 --device cuda --dtype bfloat16 --batch 8 --new 64
    python benchmarks/generation.py --ragged            # prompts of different lengths: padded vs by length

With `--ragged` the prompts' lengths spread evenly from half of `--prompt` to `--prompt`; interp runs
them as one left-padded batch and as one batch per length, HF as a left-padded batch with a mask.
With `--steer-sweep`, instead: the time of `steer_sweep` (every layer, three multipliers, no samples) on
random pairs of `--batch` prompts of `--prompt` tokens, and its scores' sum.
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

from interp.methods.generation import generate  # noqa: E402
from interp.methods.interventions import Steer  # noqa: E402
from interp.model.loading import load_model  # noqa: E402


def sweep(args, model, sync) -> None:
    """steer_sweep over every layer (and the final residual) and multipliers 0.5, 1, 4, scored only."""
    from interp.methods.steering import steer_sweep

    pairs = random_pairs(args.batch, args.prompt, CONFIGS[args.config]["vocab_size"])
    layers = list(range(model.cfg.n_layers + 1))

    def run():
        return steer_sweep(model, pairs, layers, [0.5, 1.0, 4.0], n_samples=0)

    run()  # warm-up
    seconds, result = best_of(run, sync, args.repeat)
    print(
        f"steer_sweep {len(layers)} layers x 3   {seconds:8.3f} s  scores sum {result.scores.sum().item():.6f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="mid", choices=list(CONFIGS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=16, help="prompt tokens")
    parser.add_argument("--new", type=int, default=32, help="new tokens")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--ragged", action="store_true", help="prompts of different lengths")
    parser.add_argument("--steer-sweep", action="store_true", help="time steer_sweep instead (see above)")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    cfg = CONFIGS[args.config]
    with tempfile.TemporaryDirectory() as tmp:
        directory = random_phi_dir(args.keep or Path(tmp), args.config)
        model = load_model(directory, device=args.device, dtype=args.dtype)
        from transformers import PhiForCausalLM

        # a plain Hugging Face model of the same weights (the bridge's wrapped copy does not generate right)
        hf = PhiForCausalLM.from_pretrained(
            directory, attn_implementation="eager", dtype=model.original_model.dtype
        )
        hf = hf.to(args.device).eval()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(2, min(cfg["vocab_size"], 1000), (args.batch, args.prompt), generator=g).to(
        args.device
    )
    if args.ragged:
        ragged(args, model, hf, tokens, sync)
        return
    if args.steer_sweep:
        sweep(args, model, sync)
        return
    layer = model.cfg.n_layers // 2
    vector = torch.randn(model.cfg.d_model, generator=g).to(args.device) * 0.1

    def ours(steer: bool):
        interventions = [Steer(layer, vector, 1.0)] if steer else []
        generate(model, tokens, args.new, interventions=interventions, stop_at_eos=False)

    def theirs(steer: bool):
        handle = None
        if steer:
            block = hf.model.layers[layer]
            handle = block.register_forward_pre_hook(
                lambda module, args_, kwargs: ((args_[0] + vector.to(args_[0].dtype),) + args_[1:], kwargs)
                if args_ else (args_, {**kwargs, "hidden_states": kwargs["hidden_states"] + vector.to(kwargs["hidden_states"].dtype)}),
                with_kwargs=True,
            )  # fmt: skip
        try:
            with torch.no_grad():
                hf.generate(tokens, attention_mask=torch.ones_like(tokens), max_new_tokens=args.new,
                            min_new_tokens=args.new, do_sample=False, pad_token_id=0)  # fmt: skip
        finally:
            if handle is not None:
                handle.remove()

    print(f"torch {torch.__version__}, {args.device} {torch.cuda.get_device_name() if cuda else ''}, {args.dtype}, "
          f"config {args.config}, batch {args.batch}, prompt {args.prompt}, {args.new} new tokens", flush=True)  # fmt: skip
    for steer in (False, True):
        ours(steer), theirs(steer)  # warm-up
        a, _ = best_of(lambda s=steer: ours(s), sync, args.repeat)
        b, _ = best_of(lambda s=steer: theirs(s), sync, args.repeat)
        n = args.batch * args.new
        label = "with a steering vector" if steer else "no intervention"
        print(
            f"{label:<24} interp {n / a:9.1f} tok/s   HF {n / b:9.1f} tok/s   interp / HF time {a / b:5.2f}x",
            flush=True,
        )


def ragged(args, model, hf, tokens, sync) -> None:
    """Prompts of lengths prompt/2 .. prompt: interp padded, interp by length, HF padded."""
    lengths = torch.linspace(args.prompt // 2, args.prompt, args.batch).round().long().tolist()
    prompts = [tokens[i, :n].cpu() for i, n in enumerate(lengths)]
    width = max(lengths)
    ids = torch.stack([torch.cat([torch.zeros(width - len(t), dtype=torch.long), t]) for t in prompts])
    mask = torch.stack([torch.cat([torch.zeros(width - len(t)), torch.ones(len(t))]) for t in prompts]).long()
    ids, mask = ids.to(args.device), mask.to(args.device)

    def ours(batching: str):
        generate(model, prompts, args.new, stop_at_eos=False, batching=batching)

    def theirs():
        with torch.no_grad():
            hf.generate(ids, attention_mask=mask, max_new_tokens=args.new, min_new_tokens=args.new,
                        do_sample=False, pad_token_id=0)  # fmt: skip

    ours("padded"), ours("by_length"), theirs()  # warm-up
    padded, _ = best_of(lambda: ours("padded"), sync, args.repeat)
    grouped, _ = best_of(lambda: ours("by_length"), sync, args.repeat)
    reference, _ = best_of(theirs, sync, args.repeat)
    n = args.batch * args.new
    print(f"ragged prompts, lengths {lengths}")
    print(f"interp padded     {n / padded:9.1f} tok/s   interp / HF time {padded / reference:5.2f}x")
    print(f"interp by length  {n / grouped:9.1f} tok/s   interp / HF time {grouped / reference:5.2f}x")
    print(f"HF padded         {n / reference:9.1f} tok/s")


if __name__ == "__main__":
    main()
