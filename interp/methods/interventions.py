"""The one intervention vocabulary: what to change in the model, and where, for every method.

- `Ablate(component, method)`: replace a component's output (a head, a whole attention layer, an MLP,
  one MLP neuron: `Component`; or any hook point by name) by what `method` gives
  (`interp.methods.vocabulary.AblationMethod`): 0, its mean over `reference` prompts, its value on
  another reference prompt (`resample`, from `seed`), or on the paired prompt (`counterfactual`:
  reference row i for prompt i).
- `Patch(hook, source, positions, heads)`: put a stored activation in, e.g. `cache[hook]` from
  `model.run_with_cache(corrupted)`; optionally only some heads. `source=None` is filled by
  `run_patched` from the pair's other run.
- `Steer(layer, vector, multiplier)`: add `multiplier * vector` to the residual stream entering block
  `layer` (`layer == n_layers`: the final residual).
- `AblateHeads(heads)`: zero each listed head's `z` (its write to the residual stream goes).
- `Hook(name, fn)`: any TransformerLens hook point, by its name (aliases accepted), with a
  TransformerLens-style function `fn(activation, site) -> activation | None` (None: the activation
  as `fn` left it, edited in place or not).

Each acts at `positions`: "all", "prompt" (the prompt's positions), "generated" (the new tokens'), or a
list of absolute positions. Under the key/value cache a hook sees only the positions being run, so
`fn` gets a `Site` saying which absolute positions its tensor holds (`site.start .. site.stop`); `fn`
is called on (a copy of) the whole tensor and its result, or its in-place edit when it returns None,
is used at the chosen positions only.

`compile_edits` turns them into edit functions `fn(tensor, site)` by hook name, for any target: the
engine's full forward and `interp.engine.incremental`'s points (generation), or the bridge's hooks
(`interp.methods.hooked_run`); the target says how names resolve (`resolve`) and how reference
activations are computed (`gather`). Vectors and masks move to the model's device and dtype once, not
every step. Generation's arguments are checked by `interp.methods.generation_checks`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.engine.hook_points import dims
from interp.engine.incremental import BLOCK_POINTS, EditFn, Site, fit_src_pos, points
from interp.methods.vocabulary import AblationMethod, check_method
from interp.model.hooks import head_axis, hook_aliases, pos_axis
from interp.model.loading import HookedPhi

Where = Literal["all", "prompt", "generated"]
Positions = Where | Sequence[int]


Kind = Literal["head", "attn", "mlp", "neuron"]


@dataclass(frozen=True)
class Component:
    """A head (`index` = head), a whole attention layer, an MLP, or one MLP neuron (`index` = neuron)."""

    kind: Kind
    layer: int
    index: int | None = None

    @property
    def hook(self) -> str:
        return {
            "head": f"blocks.{self.layer}.attn.hook_z",
            "attn": f"blocks.{self.layer}.hook_attn_out",
            "mlp": f"blocks.{self.layer}.hook_mlp_out",
            "neuron": f"blocks.{self.layer}.mlp.hook_post",
        }[self.kind]

    def select(self, activation: Float[Tensor, "batch pos ..."]) -> Float[Tensor, "batch pos ..."]:
        """The part of the hook's activation this component owns (a view)."""
        if self.kind == "head":
            return activation[:, :, self.index]
        if self.kind == "neuron":
            return activation[..., self.index]
        return activation

    def validate(self, model: HookedPhi) -> None:
        cfg = model.cfg
        if not 0 <= self.layer < cfg.n_layers:
            raise InputError(f"{self}: layer must be in 0..{cfg.n_layers - 1}")
        limit = {"head": cfg.n_heads, "neuron": cfg.d_mlp}.get(self.kind)
        if limit is not None and (self.index is None or not 0 <= self.index < limit):
            raise InputError(f"{self}: a {self.kind} needs index in 0..{limit - 1}")
        if self.kind not in ("head", "attn", "mlp", "neuron"):
            raise InputError(f"{self}: kind must be head, attn, mlp or neuron")


@dataclass
class Ablate:
    """Replace `component`'s output (a `Component`, or a hook point's whole activation by name) at
    `positions` by what `method` gives: 0 (`zero`), its mean over the `reference` prompts and positions
    (`mean`; `reference` may be a list of token tensors of different lengths, pooled), its value on
    another reference prompt at the same positions (`resample`, a permutation from `seed`), or on
    reference row i for prompt i (`counterfactual`: the paired corrupted prompts)."""

    component: Component | str
    method: AblationMethod = "zero"
    # token ids; for `mean`, also a list of them (a reference dataset of several lengths, pooled)
    reference: Int[Tensor, "batch pos"] | Sequence[Int[Tensor, "_batch _pos"]] | None = None
    seed: int = 0
    positions: Positions = "all"

    @property
    def hook(self) -> str:
        return self.component.hook if isinstance(self.component, Component) else self.component


@dataclass
class Steer:
    """Add `multiplier * vector` to the residual stream entering block `layer` at `positions`
    (`layer == n_layers`: the final residual, just before the unembedding)."""

    layer: int
    vector: Float[Tensor, " d_model"]
    multiplier: float = 1.0
    positions: Positions = "all"


@dataclass
class AblateHeads:
    """Zero the `z` of each (layer, head) in `heads` at `positions` (its write to the residual goes)."""

    heads: list[tuple[int, int]]
    positions: Positions = "all"


@dataclass
class Hook:
    """Call `fn(activation, site)` at the TransformerLens hook point `name`; its result (None: the
    activation as `fn` left it, edited in place or not) replaces the activation at `positions`. Layouts are TransformerLens's
    (`hook_z`: batch pos head d_head; `hook_pattern`: batch head dest_pos src_pos)."""

    name: str
    fn: Callable[[Tensor, Site], Tensor | None]
    positions: Positions = "all"


@dataclass
class Patch:
    """Replace the activation at hook point `hook` with `source` at `positions` (and only `heads`,
    for points with a head axis). `source` is a full-sequence activation in TransformerLens's layout,
    with a batch of 1 or one row per prompt, or without the batch axis; positions past its length are
    left alone. `source=None`: `run_patched` fills it from the pair's other run."""

    hook: str
    source: Float[Tensor, " ..."] | None = None
    positions: Positions = "all"
    heads: list[int] | None = None


Intervention = Ablate | Patch | Steer | AblateHeads | Hook
KINDS: tuple[type, ...] = (Ablate, Patch, Steer, AblateHeads, Hook)
# resolves a hook name to the target's name for it (an unknown name: an error naming what is allowed)
Resolve = Callable[[HookedPhi, str], str]
# the activations at these hook points on these tokens, as the target computes them
Gather = Callable[[Tensor, Sequence[str]], dict[str, Tensor]]


def permutation(n: int, seed: int) -> Int[Tensor, " batch"]:
    """A random permutation with no fixed point where possible (each prompt gets another's output)."""
    if n < 2:
        return torch.zeros(n, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    return (torch.arange(n) + torch.randint(1, n, (1,), generator=generator)) % n


def resolve_point(model: HookedPhi, name: str) -> str:
    """The engine's name for the hook point `name` (an unknown name: an error with close matches)."""
    supported = set(points(model.cfg.n_layers))
    for alias in hook_aliases(model, name):
        if alias in supported:
            return alias
    raise InputError(
        f"hook point {name!r} cannot be used while generating. Inside a block: "
        f"{', '.join(BLOCK_POINTS)} (as blocks.<layer>.<name>); outside: hook_embed, ln_final.hook_out, "
        "hook_unembed."
    )


def _selected(
    positions: Positions, site: Site, n_prompt: int | None, device
) -> Int[Tensor, " pos"] | str | None:
    """Which entries of the site's position axis are chosen: None (none), "all", or their indices.
    Decided from plain integers, so a generation step whose choice is all-or-nothing adds no work."""
    if positions == "all":
        return "all"
    if n_prompt is None:  # a single forward: every position is the prompt's
        n_prompt = site.stop
    if positions == "prompt":
        lo, hi = 0, n_prompt
    elif positions == "generated":
        lo, hi = n_prompt, site.stop
    else:
        chosen = sorted({p - site.start for p in positions if site.start <= p < site.stop})
        if not chosen:
            return None
        return "all" if len(chosen) == site.n else torch.tensor(chosen, device=device)
    lo, hi = max(lo, site.start), min(hi, site.stop)
    if lo >= hi:
        return None
    if (lo, hi) == (site.start, site.stop):
        return "all"
    return torch.arange(lo - site.start, hi - site.start, device=device)


def _merge(
    old: Float[Tensor, " ..."], new: Float[Tensor, " ..."], axis: int, chosen: Int[Tensor, " _pos"] | str
) -> Float[Tensor, " ..."]:
    """`new` at the chosen entries of `axis`, `old` elsewhere."""
    if isinstance(chosen, str):
        return new
    return old.index_copy(axis, chosen, new.index_select(axis, chosen))


def compile_edits(
    model: HookedPhi,
    interventions: Sequence[Intervention],
    n_prompt: int | None,
    rows: Sequence[int] | None,
    n_total: int | None,
    dtype: torch.dtype,
    device,
    wrap: Callable[[Intervention, EditFn], EditFn] | None = None,
    *,
    resolve: Resolve = resolve_point,
    gather: Gather | None = None,
) -> dict[str, list[EditFn]]:
    """Edit functions per hook point for one group: prompts `rows` (indices into the `n_total`
    prompts given; None: every prompt, as given) of `n_prompt` tokens (None: a single forward, all
    prompt). `wrap(intervention, fn)`, if given, replaces each edit function (e.g. to watch what it
    writes). `resolve` gives the target's name for a hook name (default: generation's points);
    `gather(tokens, names)` the reference activations an `Ablate` needs (none: only `zero`)."""
    edits: dict[str, list[EditFn]] = {}
    for item in interventions:
        for name, fn in _compile(model, item, n_prompt, rows, n_total, dtype, device, resolve, gather):
            edits.setdefault(name, []).append(fn if wrap is None else wrap(item, fn))
    return edits


def _compile(
    model: HookedPhi, item: Intervention, n_prompt, rows, n_total, dtype, device, resolve, gather
) -> list[tuple[str, EditFn]]:
    """One intervention's (hook point, edit function) pairs."""
    n_layers = model.cfg.n_layers
    if isinstance(item, Ablate):
        name = resolve(model, item.hook)
        return [
            (name, _ablate_component(item, name, n_prompt, _reference(item, name, gather, device, dtype)))
        ]
    if isinstance(item, Steer):
        name = (
            f"blocks.{n_layers - 1}.hook_resid_post"
            if item.layer == n_layers
            else f"blocks.{item.layer}.hook_resid_pre"
        )
        return [(name, _steer(item, n_prompt, dtype, device))]
    if isinstance(item, AblateHeads):
        return [
            (
                f"blocks.{layer}.attn.hook_z",
                _ablate(
                    sorted({h for la, h in item.heads if la == layer}),
                    item.positions,
                    n_prompt,
                    model.cfg.n_heads,
                    dtype,
                    device,
                ),
            )
            for layer in sorted({la for la, _ in item.heads})
        ]
    if isinstance(item, Hook):
        return [(resolve(model, item.name), _hook(item, n_prompt))]
    name = resolve(model, item.hook)
    if item.source is None:
        raise InputError(
            f"Patch({item.hook!r}) has no source; give source= (e.g. cache[{item.hook!r}] from another run), "
            "or use run_patched, which takes it from the pair's other run."
        )
    return [(name, _patch(item, name, n_prompt, rows, n_total, dtype, device))]


def reference_mean(
    parts: Sequence[Float[Tensor, " ..."]], axes: tuple[int, int] = (0, 1)
) -> Float[Tensor, " ..."]:
    """The mean ablation value: activations averaged over the batch and position `axes` of every part
    pooled (each prompt position weighs alike, whatever its part's length), accumulated in float32 and
    returned in the parts' dtype with those axes kept (size 1). `Ablate(method="mean")` and circuit
    evaluation both take their means from here."""
    total = sum(part.float().sum(dim=axes, keepdim=True) for part in parts)
    count = sum(part.shape[axes[0]] * part.shape[axes[1]] for part in parts)
    return (total / count).to(parts[0].dtype)


def ablation_values(
    method: AblationMethod, parts: Sequence[Float[Tensor, " ..."]], axes: tuple[int, int] = (0, 1)
) -> list[Float[Tensor, " ..."]]:
    """What `method` puts in place of each part of the reference activations (one tensor per group of
    prompts, batch and position at `axes`), in that part's shape: zeros (`zero`), `reference_mean` over
    every part (`mean`, broadcast), or the part itself (`counterfactual`: row i for prompt i). Circuit
    evaluation's senders and feature nodes take their ablated values from here; `resample` draws
    rows, which only `Ablate` does."""
    check_method(method, ("zero", "mean", "counterfactual"), "method")
    if method == "zero":
        return [torch.zeros_like(part) for part in parts]
    if method == "mean":
        mean = reference_mean(parts, axes)
        return [mean.expand_as(part) for part in parts]
    return list(parts)


def _reference(item: Ablate, name: str, gather: Gather | None, device, dtype) -> Float[Tensor, " ..."] | None:
    """What an `Ablate` takes its values from: None (zero), the reference mean (batch and position axes
    kept, of size 1), or the reference activations (resample, counterfactual)."""
    if item.method == "zero":
        return None
    if item.reference is None:
        raise InputError(
            f"{item.method} ablation needs reference tokens (a batch of prompts to average or resample)"
        )
    if gather is None:
        raise InputError(f"Ablate method={item.method!r} is not allowed here; use 'zero'.")
    if item.method == "mean" and pos_axis(name) != 1:
        raise InputError(
            f"mean ablation at {name}: its positions are dest_pos x src_pos, which a mean over prompts "
            "of other lengths does not fit; use 'zero', 'resample' or 'counterfactual' there."
        )
    # a reference dataset of several lengths (mean only), or one batch
    references = [item.reference] if isinstance(item.reference, Tensor) else item.reference
    parts = [gather(tokens, [name])[name].detach() for tokens in references]
    if item.method == "mean":
        return reference_mean(parts).to(device, dtype)
    return parts[0].to(device, dtype)


def _ablate_component(item: Ablate, name: str, n_prompt, value: Float[Tensor, " ..."] | None) -> EditFn:
    component = item.component if isinstance(item.component, Component) else None
    axis = pos_axis(name)

    def select(t: Float[Tensor, " ..."]) -> Float[Tensor, " ..."]:
        return t if component is None else component.select(t)

    def edit(x: Float[Tensor, " ..."], site: Site) -> Float[Tensor, " ..."]:
        chosen = _selected(item.positions, site, n_prompt, x.device)
        if chosen is None:
            return x
        out = x.clone()
        target = select(out)
        if value is None:
            target.zero_()
        elif item.method == "mean":
            target.copy_(select(value).expand_as(target))
        else:
            batch, n_source = x.shape[0], value.shape[axis]
            if n_source < site.stop:
                raise InputError(
                    f"{item.method} ablation: reference prompts have {n_source} tokens, inputs {site.stop}"
                )
            if item.method == "resample":
                rows = permutation(max(batch, value.shape[0]), item.seed)[:batch] % value.shape[0]
            elif value.shape[0] != batch:
                raise InputError(
                    f"counterfactual ablation takes reference row i for prompt i: the reference has "
                    f"{value.shape[0]} prompts, the input {batch}; give one reference prompt per prompt."
                )
            else:
                rows = torch.arange(batch)
            source = value[rows.to(value.device)].narrow(axis, site.start, site.n)
            if axis == 2:  # scores / pattern: the source axis to the current length
                source = fit_src_pos(source, x.shape[-1], name)
            target.copy_(select(source))
        return _merge(x, out, axis, chosen)

    return edit


def _steer(item: Steer, n_prompt: int | None, dtype, device) -> EditFn:
    delta = (item.multiplier * item.vector.to(device, torch.float32)).to(dtype)  # once, not every step

    def edit(x: Float[Tensor, " ..."], site: Site) -> Float[Tensor, " ..."]:
        chosen = _selected(item.positions, site, n_prompt, x.device)
        if chosen is None:
            return x
        return _merge(x, x + delta, 1, chosen)

    return edit


def _ablate(
    heads: list[int], positions: Positions, n_prompt: int | None, n_heads: int, dtype, device
) -> EditFn:
    keep = torch.ones(n_heads, 1, dtype=dtype, device=device)  # head d_head (broadcast)
    keep[heads] = 0

    def edit(z: Float[Tensor, "batch pos head d_head"], site: Site) -> Float[Tensor, "batch pos head d_head"]:
        chosen = _selected(positions, site, n_prompt, z.device)
        if chosen is None:
            return z
        return _merge(z, z * keep, 1, chosen)

    return edit


def _hook(item: Hook, n_prompt: int | None) -> EditFn:
    def edit(x: Float[Tensor, " ..."], site: Site) -> Float[Tensor, " ..."]:
        chosen = _selected(item.positions, site, n_prompt, x.device)
        if chosen is None:
            return x
        # fn gets its own copy: an in-place edit (TransformerLens's idiom, returning None) then
        # reaches the chosen positions only, and never a tensor the forward still reads
        given = x.clone()
        out = item.fn(given, site)
        if out is None:
            out = given
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise InputError(
                f"Hook({item.name!r}) returned {got}; it must return None or a tensor of the activation's "
                f"shape {tuple(x.shape)} (positions {site.start}..{site.stop - 1})."
            )
        return _merge(x, out.to(x.dtype), pos_axis(site.name), chosen)

    return edit


def _patch(item: Patch, name: str, n_prompt, rows: Sequence[int] | None, n_total, dtype, device) -> EditFn:
    axis = pos_axis(name)
    source = item.source.detach()  # its layout and batch checked by generation_checks / hooked_run
    if source.dim() == _ndim(name):
        source = source if source.shape[0] == 1 or rows is None else source[list(rows)]
    else:
        source = source[None]
    source = source.to(device, dtype)
    n_source = source.shape[axis]
    heads = None
    if item.heads is not None:
        heads = torch.tensor(sorted(set(item.heads)), device=device)

    def edit(x: Float[Tensor, " ..."], site: Site) -> Float[Tensor, " ..."]:
        chosen = _selected(item.positions, site, n_prompt, x.device)
        if chosen is None:
            return x
        offsets = range(site.n) if isinstance(chosen, str) else chosen.tolist()
        covered = [site.start + i for i in offsets if site.start + i < n_source]  # absolute positions
        if not covered:
            return x
        src = source.index_select(axis, torch.tensor(covered, device=source.device))
        if axis == 2:  # scores / pattern: the source axis to the current length
            src = fit_src_pos(src, x.shape[-1], name)
        expected = list(x.shape)
        expected[axis] = src.shape[axis]
        if list(src.shape[1:]) != expected[1:]:
            raise InputError(
                f"Patch({item.hook!r}) source has shape {tuple(item.source.shape)}; at {name} the model has "
                f"{tuple(x.shape)} for positions {site.start}..{site.stop - 1} ({layout(name)})."
            )
        src = src.expand(x.shape[0], *src.shape[1:])
        index = torch.tensor([p - site.start for p in covered], device=x.device)
        if heads is not None:
            current = x.index_select(axis, index)
            src = current.index_copy(head_axis(name), heads, src.index_select(head_axis(name), heads))
        return x.index_copy(axis, index, src)

    return edit


def _ndim(name: str) -> int:
    return len(layout(name).split())


def layout(name: str) -> str:
    """The point's TransformerLens layout, e.g. "batch pos head d_head" (the engine's schema where it
    is an engine point)."""
    try:
        return " ".join(dims(name))
    except KeyError:
        pass
    point = name.split(".", 2)[2] if name.startswith("blocks.") else name
    if point in ("attn.hook_attn_scores", "attn.hook_pattern"):
        return "batch head dest_pos src_pos"
    if head_axis(name) is not None:
        return "batch pos head d_head"
    if point in ("mlp.hook_pre", "mlp.hook_post"):
        return "batch pos d_mlp"
    if point == "hook_unembed":
        return "batch pos d_vocab"
    if point.endswith("hook_scale"):
        return "batch pos 1"
    return "batch pos d_model"
