"""One entry point for running the model with interventions, on either of its two forwards.

    logits = run_with_interventions(model, tokens, [
        Ablate(Component("head", 1, 0), "mean", reference=other_tokens),
        Patch("blocks.0.hook_resid_pre", cache["blocks.0.hook_resid_pre"], positions=[3]),
        Steer(layer=1, vector=v, multiplier=2.0),
    ], target="engine")

The interventions (`interp.methods.interventions`: `Ablate`, `Patch`, `Steer`, `AblateHeads`, `Hook`)
are compiled once, by `compile_edits`, into edit functions `fn(tensor, site)` by hook name, and then
given to one of two targets:

- `target="engine"`: the functional forward (`interp.engine.forward`), its edit points
  (`interp.engine.hook_points`: the split receiver inputs `hook_q_input` ... `hook_mlp_in` included);
  `run_on_engine` is this target on weights built once, for a method running many forwards
  (`steer_sweep`), optionally the final position's logits only;
- `target="bridge"`: TransformerLens's bridge, each edit a forward hook (removed when the run ends,
  also when it raises); every hook point the bridge has, e.g. `blocks.0.hook_out`, `attn.hook_cos`,
  `ln_final.hook_scale`, which the engine does not compute. `on_bridge(model, interventions)` is the
  same as a context manager around any forwards (`interp.methods.ablation.ablate` is built on it).

Both give equal logits for every intervention (tested, with TransformerLens's `run_with_hooks` written
by hand as the reference). Each target refuses by name what only the other computes. Reference
activations (`Ablate` with `mean`, `resample`, `counterfactual`) come from the same target.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.engine.edits import EditFn, Keep, Site
from interp.engine.forward import PhiWeights, final_logits, forward
from interp.engine.hook_points import SPLIT_INPUTS, all_points, split_name
from interp.methods.generation_checks import check_interventions
from interp.methods.interventions import KINDS, Intervention, compile_edits
from interp.model.cache import cache_activations
from interp.model.hooks import hook_aliases, pos_axis, refuse_user_hooks
from interp.model.loading import HookedPhi

Target = Literal["engine", "bridge"]
TARGETS = ("engine", "bridge")


def engine_point(model: HookedPhi, name: str) -> str:
    """The engine's name for hook point `name`; a bridge-only point is refused naming the target that
    computes it, an unknown one with close matches."""
    engine = set(all_points(model.cfg.n_layers))
    aliases = hook_aliases(model, name)  # an unknown name: HookNameError with close matches
    for alias in aliases:
        if alias in engine:
            return alias
    raise InputError(
        f"hook point {name!r} is the bridge's only: target='engine' computes the engine's edit points "
        "(interp.engine.hook_points: blocks.<layer>.hook_resid_pre ... hook_resid_post, hook_embed, "
        "ln_final.hook_out, hook_unembed); target='bridge' computes this one."
    )


def bridge_point(model: HookedPhi, name: str) -> str:
    """`name` if the bridge computes it; the split receiver inputs are refused (the bridge fires them
    only in TransformerLens's split-qkv mode, which computes another layout), naming target='engine'."""
    aliases = hook_aliases(model, name)
    split = [a for a in aliases if split_name(a)[1].removeprefix("attn.") in SPLIT_INPUTS]
    if split:
        raise InputError(
            f"hook point {name!r} (a split receiver input: {', '.join(sorted(SPLIT_INPUTS))}) is the "
            "engine's only: the bridge does not run it; use target='engine'."
        )
    return name


def engine_gather(model: HookedPhi, w: PhiWeights) -> Callable[[Tensor, Sequence[str]], dict[str, Tensor]]:
    """Reference activations (an `Ablate`'s mean, resample, counterfactual) from the engine's full
    forward over the reference tokens."""

    def gather(tokens: Int[Tensor, "batch pos"], names: Sequence[str]) -> dict[str, Tensor]:
        store: dict[str, Tensor] = {}
        with torch.no_grad():
            forward(w, w.W_E[tokens.to(w.W_E.device)], {name: Keep(store) for name in names})
        return store

    return gather


def _bridge_gather(model: HookedPhi) -> Callable[[Tensor, Sequence[str]], dict[str, Tensor]]:
    def gather(tokens: Int[Tensor, "batch pos"], names: Sequence[str]) -> dict[str, Tensor]:
        return cache_activations(model, tokens.to(model.cfg.device), names)

    return gather


def check_single_run(
    model: HookedPhi, interventions: Sequence[Intervention], n_pos: int, resolve: Callable, n_prompts: int
) -> None:
    """Every intervention well-formed for one forward over `n_prompts` prompts of `n_pos` tokens."""
    if isinstance(interventions, str) or not isinstance(interventions, Sequence):
        raise InputError(
            f"interventions={interventions!r} is not allowed; use a list of Ablate, Patch, Steer, "
            "AblateHeads or Hook."
        )
    for item in interventions:
        positions = getattr(item, "positions", "all")
        if positions == "generated":
            raise InputError(
                f"{type(item).__name__} at positions='generated': a single forward generates nothing; use "
                "'all', 'prompt' or a list of positions."
            )
        if not isinstance(positions, str) and isinstance(positions, Sequence | range):
            outside = sorted({int(p) for p in positions if isinstance(p, int) and not 0 <= p < n_pos})
            if outside:
                raise InputError(
                    f"{type(item).__name__} positions {outside} are outside the prompts' positions "
                    f"0 .. {n_pos - 1}."
                )
    check_interventions(model, interventions, n_prompts, resolve=resolve, kinds=KINDS)


@contextmanager
def bridge_hooks(
    model: HookedPhi, edits: dict[str, list[EditFn]], fired: set[str] | None = None
) -> Iterator[HookedPhi]:
    """The model with each edit as a forward hook on its point (a site over the whole sequence);
    every hook is removed on leaving, also when the run raises. `fired` collects the points run."""

    def hook_for(name: str, fns: list[EditFn]):
        layer = split_name(name)[0]

        def hook(activation: Float[Tensor, " ..."], *, hook) -> Float[Tensor, " ..."]:
            if fired is not None:
                fired.add(name)
            site = Site(name, layer, 0, activation.shape[pos_axis(name)])
            for fn in fns:
                activation = fn(activation, site)
            return activation

        return hook

    # the bridge's own context removes exactly the hooks it added, in its `finally`
    with model.hooks(fwd_hooks=[(name, hook_for(name, fns)) for name, fns in edits.items()]):
        yield model


@contextmanager
def on_bridge(
    model: HookedPhi, interventions: Sequence[Intervention], fired: set[str] | None = None
) -> Iterator[dict[str, list[EditFn]]]:
    """The bridge running `interventions` inside the `with` block, on every forward the block makes:
    each is checked (`check_interventions`), compiled by `compile_edits` (reference activations from
    the bridge) and attached as a forward hook; every hook is removed on leaving, also when the block
    raises, and hooks already attached (an outer block) stay. Yields the compiled edits by hook point;
    `fired` collects the points that ran. `run_with_interventions(target="bridge")` and
    `interp.methods.ablation.ablate` both run through here."""
    check_interventions(model, interventions, resolve=bridge_point, kinds=KINDS)
    parameter = next(model.parameters())
    named = [getattr(item, "hook", getattr(item, "name", "")) for item in interventions]
    with _attn_result(model, any(str(name).endswith("hook_result") for name in named)):
        edits = compile_edits(
            model, interventions, None, None, None, parameter.dtype, parameter.device,
            resolve=bridge_point, gather=_bridge_gather(model),
        )  # fmt: skip
        with bridge_hooks(model, edits, fired):
            yield edits


def run_with_interventions(
    model: HookedPhi,
    tokens: Int[Tensor, "batch pos"],
    interventions: Sequence[Intervention],
    target: Target = "engine",
) -> Float[Tensor, "batch pos d_vocab"]:
    """All-position logits of `tokens` with every intervention applied at once, on `target`'s forward."""
    if target not in TARGETS:
        raise InputError(f"target={target!r} is not allowed; use 'engine' or 'bridge'.")
    refuse_user_hooks(model, "run_with_interventions")
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.dtype.is_floating_point:
        raise InputError("tokens must be a tensor of token ids [batch pos]")
    if target == "engine":
        return run_on_engine(model, PhiWeights.from_model(model), tokens, interventions)
    check_single_run(model, interventions, tokens.shape[1], bridge_point, tokens.shape[0])
    fired: set[str] = set()
    with torch.no_grad(), on_bridge(model, interventions, fired) as edits:
        logits = model(tokens.to(model.cfg.device))
    silent = sorted(set(edits) - fired)
    if silent:
        raise InputError(
            f"hook points {silent} did not run on the bridge (it computes them only in another mode), so "
            "their interventions would change nothing; use target='engine' or another hook point."
        )
    return logits


def run_on_engine(
    model: HookedPhi,
    w: PhiWeights,
    tokens: Int[Tensor, "batch pos"],
    interventions: Sequence[Intervention],
    *,
    final_only: bool = False,
) -> Float[Tensor, "batch pos d_vocab"] | Float[Tensor, "batch d_vocab"]:
    """`run_with_interventions(model, tokens, interventions, target="engine")` on the engine weights `w`
    (`PhiWeights.from_model(model)`, which copies the fused q/k/v matrices: built once by a caller that
    runs many forwards). `final_only`: only the final position's logits, [batch d_vocab] (all a
    final-position metric reads; the unembedding runs there alone)."""
    check_single_run(model, interventions, tokens.shape[1], engine_point, tokens.shape[0])
    edits = compile_edits(
        model, interventions, None, None, None, w.W_E.dtype, w.W_E.device,
        resolve=engine_point, gather=engine_gather(model, w),
    )  # fmt: skip
    with torch.no_grad():
        run = forward(w, w.W_E[tokens.to(w.W_E.device)], edits)
        if final_only:
            return run.logits(w)
        return final_logits(w, run.resid_final, run.model_edits, 0)


@contextmanager
def _attn_result(model: HookedPhi, on: bool) -> Iterator[None]:
    """The bridge computing per-head results (`attn.hook_result`) while `on`, restored on leaving."""
    was = bool(getattr(model.cfg, "use_attn_result", False))
    try:
        if on:
            model.set_use_attn_result(True)
        yield
    finally:
        if on:
            model.set_use_attn_result(was)
