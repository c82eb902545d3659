"""Splice dictionaries into the model: inside the block, every method runs on their outputs.

    with interp.splice(model, [sae, transcoder], error=True) as spliced:
        logits, cache = model.run_with_cache(tokens)          # the bridge, spliced
        acts = cache[spliced.name(sae, "hook_acts")]          # [batch pos d_sae]
        result = interp.sweep(model, pairs, "head_out")       # the engine, spliced
        out = interp.generate(model, prompt, 10)              # generation, spliced

An SAE replaces the activation at its hook with its reconstruction; a transcoder replaces the
activation at `hook_name_out` with its prediction from the activation at `hook_name` (same block,
read before written). The dictionary's latents, reconstruction and error are hook points of their
own, named after the hook written (`W` below), on the bridge (`model.hook_dict`, `run_with_cache`,
`run_with_hooks`: TransformerLens-style hooks) and in the engine (`interp.engine.hook_points`
learns them while spliced: edits, patches and steering by name, in generation too):

    W.dict.hook_acts    [batch pos d_sae]   latent activations (patch or steer features here)
    W.dict.hook_recons  [batch pos d_out]   the dictionary's output from those latents
    W.dict.hook_error   [batch pos d_out]   activation - output (with `error=True` only)

With `error=False` the model continues from the reconstruction. With `error=True` (SAELens's
`use_error_term`, Marks et al. 2024's error nodes) it continues from reconstruction + error, where
the error is the model's activation minus the reconstruction of the *unedited* latents: the model's
outputs are then exactly the unspliced ones (the activation itself is passed on when nothing at the
dictionary's points was changed), and an edit of the latents changes the activation by exactly the
change it makes to the reconstruction. Gradients flow through latents and error alike.

Order at a hook point: a dictionary writing it comes first (so other hooks and edits there see, and
may replace, the spliced value), a transcoder reading it last (it reads what the model goes on
with). The hooks are plain torch hooks on the bridge's hook points (invisible to TransformerLens's
`reset_hooks` and to the user-hook policy of `interp.model.hooks`; at `ln1.hook_scale` /
`ln1.hook_normalized` a marker tells the bridge's LayerNorm to keep the autograd graph, so gradients
through the dictionary are the engine's) and are removed on leaving the block, also when its body
raises. Refused by name: a hook that is not a hook point of the model or
not a `[batch pos width]` point inside a block, a width that is not the dictionary's, a transcoder
whose hooks are in different blocks or out of order, two dictionaries writing one hook point, and a
splice inside a splice. The engine caches the residual entering each block before that block's
edits, so for an SAE at `blocks.L.hook_resid_pre` a method reading cached residuals sees the
unspliced value there (the spliced one is `blocks.L-1.hook_resid_post`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens.hook_points import HookPoint, LensHandle

from interp.base.errors import InputError
from interp.dictionaries.base import Dictionary
from interp.engine import hook_points, splicing
from interp.engine.edits import BlockEdits, EditFn, Site, apply
from interp.model.hooks import hook_aliases, validate_hook_names
from interp.model.loading import HookedPhi

Point = Literal["hook_acts", "hook_recons", "hook_error"]
POINTS: tuple[Point, ...] = ("hook_acts", "hook_recons", "hook_error")

# block points a dictionary may read or write: one vector per position ([batch pos width])
SPLICEABLE = tuple(
    p
    for p, dims in hook_points.BLOCK_POINTS.items()
    if len(dims.split()) == 3 and p not in hook_points.SPLIT_INPUTS
)


@dataclass(frozen=True)
class SplicedDictionary:
    """One dictionary in a splice: the engine names of the hooks it reads and writes, and its points."""

    dictionary: Dictionary
    reads: str  # e.g. blocks.1.ln1.hook_normalized
    writes: str  # e.g. blocks.1.hook_mlp_out (= reads for an SAE)
    layer: int
    error: bool

    @property
    def read_point(self) -> str:
        return hook_points.split_name(self.reads)[1]

    @property
    def write_point(self) -> str:
        return hook_points.split_name(self.writes)[1]

    @property
    def points(self) -> tuple[Point, ...]:
        return POINTS if self.error else POINTS[:2]

    def name(self, point: Point) -> str:
        """The full hook name of one of its points, e.g. `blocks.1.hook_mlp_out.dict.hook_acts`."""
        return f"{self.writes}{hook_points.DICT_MARK}{point}"

    def dims(self) -> dict[str, str]:
        """Its points' full names -> dimensions."""
        out = hook_points.BLOCK_POINTS[self.write_point].split()[-1]
        spec = {"hook_acts": "d_sae", "hook_recons": out, "hook_error": out}
        return {self.name(p): f"batch pos {spec[p]}" for p in self.points}


Run = Callable[[Point, Tensor], Tensor]  # a dictionary point's value through its hooks / edits


def spliced_output(
    entry: SplicedDictionary,
    x: Float[Tensor, "... pos d_in"],
    activation: Float[Tensor, "... pos d_out"],
    run: Run,
) -> Float[Tensor, "... pos d_out"]:
    """What the model goes on with at the written hook: the reconstruction (error=False) or the
    activation plus the change the dictionary points' edits make (error=True; the activation itself
    when they make none)."""
    d = entry.dictionary
    device = d.W_dec.device
    x = x.to(device)
    clean_acts = d.encode(x)
    acts = run("hook_acts", clean_acts)
    skip = d.skip(x) if d.W_skip is not None else None
    clean = d.decode(clean_acts) if skip is None else d.decode(clean_acts) + skip
    if acts is clean_acts:
        recons = clean
    else:
        recons = d.decode(acts.to(device, torch.float32))
        recons = recons if skip is None else recons + skip
    recons = run("hook_recons", recons)
    if not entry.error:
        return recons.to(activation.device, activation.dtype)
    clean_error = activation.to(device, torch.float32) - clean
    error = run("hook_error", clean_error)
    if recons is clean and error is clean_error:
        return activation
    change = (recons - clean) + (error - clean_error)
    return (activation.to(device, torch.float32) + change).to(activation.device, activation.dtype)


class Spliced:
    """What `splice` yields: the dictionaries spliced in and the names of their hook points."""

    def __init__(self, model: HookedPhi, entries: list[SplicedDictionary], error: bool):
        self.model, self.entries, self.error = model, entries, error

    def entry(self, dictionary: Dictionary | str) -> SplicedDictionary:
        """The splice's record of `dictionary` (the object, or the hook it writes)."""
        for entry in self.entries:
            if entry.dictionary is dictionary or entry.writes == dictionary:
                return entry
        written = ", ".join(e.writes for e in self.entries)
        raise InputError(f"{dictionary!r} is not spliced in here; the dictionaries spliced write {written}.")

    def name(self, dictionary: Dictionary | str, point: Point = "hook_acts") -> str:
        """Full hook name of a dictionary's point: `name(sae)` -> `blocks.1.hook_resid_pre.dict.hook_acts`."""
        entry = self.entry(dictionary)
        if point not in entry.points:
            allowed = ", ".join(entry.points)
            why = " (hook_error exists with error=True only)" if point == "hook_error" else ""
            raise InputError(f"point={point!r} is not allowed{why}; use one of {allowed}.")
        return entry.name(point)

    @property
    def points(self) -> dict[str, str]:
        """Every dictionary point's full name -> its dimensions."""
        return {name: dims for entry in self.entries for name, dims in entry.dims().items()}

    def __repr__(self) -> str:
        inside = ", ".join(
            e.writes if e.reads == e.writes else f"{e.reads} -> {e.writes}" for e in self.entries
        )
        return f"Spliced({inside}; error={self.error})"


# --- checks ---------------------------------------------------------------------------------------


def _width(model: HookedPhi, point: str) -> int:
    name = hook_points.BLOCK_POINTS[point].split()[-1]
    return 1 if name == "1" else int(getattr(model.cfg, name))


def _engine_name(model: HookedPhi, d: Dictionary, field: str, name: str) -> str:
    """The engine's name of the hook point `name` (an alias allowed), refused where splice cannot act."""
    validate_hook_names(model, [name])
    allowed = {f"blocks.{layer}.{p}" for layer in range(model.cfg.n_layers) for p in SPLICEABLE}
    for alias in hook_aliases(model, name):
        if alias in allowed:
            return alias
    raise InputError(
        f"{d!r}: {field}={name!r} is a hook point splice cannot read or write; dictionaries splice in at "
        f"blocks.<layer>.<{'|'.join(SPLICEABLE)}> (one vector per position)."
    )


def check_dictionaries(
    model: HookedPhi, dictionaries: Dictionary | Sequence[Dictionary], error: bool
) -> list[SplicedDictionary]:
    """The splice's records of `dictionaries`, each checked against the model (see the module docstring)."""
    if not isinstance(error, bool):
        raise InputError(f"error={error!r} is not allowed; use True or False.")
    if isinstance(dictionaries, Dictionary):
        dictionaries = [dictionaries]
    if isinstance(dictionaries, Mapping | str) or not isinstance(dictionaries, Sequence) or not dictionaries:
        raise InputError(f"splice takes a Dictionary or a non-empty list of them, not {dictionaries!r}.")
    entries: list[SplicedDictionary] = []
    writers: dict[str, Dictionary] = {}
    for d in dictionaries:
        if not isinstance(d, Dictionary):
            raise InputError(
                f"splice takes Dictionary objects (interp.load_dictionary), not {type(d).__name__}."
            )
        if d.hook_name is None:
            raise InputError(f"{d!r} has no hook_name: say which hook point it reads (cfg.hook_name).")
        reads = _engine_name(model, d, "hook_name", d.hook_name)
        writes = reads if d.kind == "sae" else _engine_name(model, d, "hook_name_out", d.hook_name_out or "")
        layer, read_point = hook_points.split_name(reads)
        out_layer, write_point = hook_points.split_name(writes)
        for field, point, width, size in (
            ("d_in", read_point, d.d_in, "reads"),
            ("d_out", write_point, d.d_out, "writes"),
        ):
            if width != _width(model, point):
                raise InputError(
                    f"{d!r}: {field}={width} but the hook point it {size} ({point}) is "
                    f"{_width(model, point)} wide in this model."
                )
        if d.kind != "sae":
            order = list(hook_points.BLOCK_POINTS)
            if out_layer != layer or order.index(read_point) >= order.index(write_point):
                raise InputError(
                    f"{d!r}: a spliced {d.kind} reads a hook point before the one it writes, in the same "
                    f"block (e.g. blocks.L.ln1.hook_normalized -> blocks.L.hook_mlp_out); got {reads} -> {writes}."
                )
        if writes in writers:
            raise InputError(
                f"two dictionaries write {writes}: {writers[writes]!r} and {d!r}; splice one per hook point."
            )
        writers[writes] = d
        entries.append(SplicedDictionary(d, reads, writes, layer, error))
    return entries


# --- the engine's side ----------------------------------------------------------------------------


class _EngineSplicer:
    """Adds each spliced dictionary's edits to its block's (see `interp.engine.splicing`)."""

    def __init__(self, entries: list[SplicedDictionary]):
        self.by_layer: dict[int, list[SplicedDictionary]] = {}
        for entry in entries:
            self.by_layer.setdefault(entry.layer, []).append(entry)

    def block_edits(self, layer: int, edits: BlockEdits) -> BlockEdits:
        entries = self.by_layer.get(layer)
        if not entries:
            return edits
        out: dict[str, list[EditFn]] = {}
        at_points: dict[str, list[EditFn]] = {}
        for name, fns in edits.items():
            (at_points if hook_points.is_dictionary_point(name) else out)[name] = list(fns)
        for entry in entries:
            prefix = entry.write_point + hook_points.DICT_MARK
            mine = {p: at_points.pop(prefix + p, []) for p in entry.points}
            state: dict[str, tuple[Tensor, Site]] = {}
            if entry.dictionary.kind != "sae":
                out[entry.read_point] = [*out.get(entry.read_point, []), _reader(state)]
            out[entry.write_point] = [_writer(entry, state, mine), *out.get(entry.write_point, [])]
        if at_points:
            raise ValueError(f"no dictionary spliced in block {layer} has the points {sorted(at_points)}")
        return out


def _reader(state: dict) -> EditFn:
    def read(tensor: Tensor, site: Site) -> Tensor:
        state["x"] = (tensor, site)
        return tensor

    return read


def _writer(entry: SplicedDictionary, state: dict, fns: dict[str, list[EditFn]]) -> EditFn:
    def write(activation: Tensor, site: Site) -> Tensor:
        if entry.dictionary.kind == "sae":
            x = activation
        else:
            x, read_site = state["x"]
            x = x[..., site.start - read_site.start : site.stop - read_site.start, :]

        def run(point: Point, tensor: Tensor) -> Tensor:
            return apply(fns[point], tensor, Site(entry.name(point), site.layer, site.start, site.n))

        return spliced_output(entry, x, activation, run)

    return write


# --- the bridge's side ----------------------------------------------------------------------------


def _hook_bridge(model: HookedPhi, entries: list[SplicedDictionary], undo: list) -> None:
    """Dictionary hook points in the bridge's registry and torch hooks at the points read and written."""
    registry = model._hook_registry
    for entry in entries:
        points: dict[str, HookPoint] = {}
        for point in entry.points:
            hp = HookPoint()
            hp.name = entry.name(point)
            registry[hp.name] = hp
            undo.append(lambda name=hp.name: registry.pop(name, None))
            points[point] = hp
        state: dict[str, Tensor] = {}
        if entry.dictionary.kind != "sae":
            _read_last(model.hook_dict[entry.reads], state, undo)
        written = model.hook_dict[entry.writes]
        for point in {entry.read_point, entry.write_point} & hook_points.LN_INSIDE:
            _keep_graph(model.hook_dict[f"blocks.{entry.layer}.{point}"], undo)

        def write(module, args, output, entry=entry, points=points, state=state):
            activation = _converted(module, output)
            if entry.dictionary.kind == "sae":
                x = activation
            else:
                if "x" not in state:
                    raise RuntimeError(f"{entry.reads} did not run before {entry.writes} in this forward")
                x = state.pop("x")
            result = spliced_output(entry, x, activation, lambda p, t: points[p](t))
            if result is activation:
                return None
            return result if module.hook_conversion is None else module.hook_conversion.revert(result)

        handle = written.register_forward_hook(write, prepend=True)
        undo.append(handle.remove)


def _splice_mark(*args) -> None:
    """The user hook of the marker `_keep_graph` lists; `interp.model.hooks` does not count it."""


_splice_mark.interp_splice = True  # type: ignore[attr-defined]


def _keep_graph(hp: HookPoint, undo: list) -> None:
    """List a marker among `hp`'s TransformerLens hooks: the bridge's LayerNorm computes its
    `hook_scale` / `hook_normalized` without autograd when none is listed, which would cut the
    gradient through a dictionary reading or writing them (plain torch hooks are not listed)."""
    handle = LensHandle(hp.register_forward_hook(_splice_mark), is_permanent=True, user_hook=_splice_mark)
    hp.fwd_hooks.append(handle)

    def remove() -> None:
        handle.hook.remove()
        hp.fwd_hooks[:] = [h for h in hp.fwd_hooks if h is not handle]

    undo.append(remove)


def _converted(module: HookPoint, output: Tensor) -> Tensor:
    return output if module.hook_conversion is None else module.hook_conversion.convert(output)


def _read_last(hp: HookPoint, state: dict, undo: list) -> None:
    """Store the value at `hp` after every other hook there: a pre-hook moves the reading hook last
    before each call (hooks added by `run_with_hooks` come in after the splice)."""

    def read(module, args, output):
        state["x"] = _converted(module, output)

    handle = hp.register_forward_hook(read)

    def last(module, args):
        hooks = module._forward_hooks
        if next(reversed(hooks)) != handle.id:
            hooks.move_to_end(handle.id)

    pre = hp.register_forward_pre_hook(last)
    undo += [handle.remove, pre.remove]


_CURRENT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> Spliced


def current(model: HookedPhi) -> Spliced | None:
    """The splice the model is in now (None outside every `with splice(...)`)."""
    return _CURRENT.get(model)


def current_entry(dictionary: Dictionary) -> SplicedDictionary | None:
    """The live splice's record of `dictionary`, in whichever model it is spliced (None if none)."""
    for spliced in list(_CURRENT.values()):
        for entry in spliced.entries:
            if entry.dictionary is dictionary:
                return entry
    return None


@contextmanager
def splice(
    model: HookedPhi, dictionaries: Dictionary | Sequence[Dictionary], *, error: bool = True
) -> Iterator[Spliced]:
    """Inside the block, the model runs with `dictionaries` spliced in (see the module docstring):
    the bridge, the engine's methods and generation. Yields a `Spliced` naming the new hook points."""
    entries = check_dictionaries(model, dictionaries, error)
    if splicing.active(model) is not None:
        raise InputError("the model already has dictionaries spliced in: splice them all in one call.")
    if hook_points.SPLICED:
        raise InputError(
            "dictionaries are spliced into another model already; one splice at a time (leave that block)."
        )
    spliced = Spliced(model, entries, error)
    undo: list[Callable[[], object]] = []
    try:
        hook_points.add_spliced(spliced.points)
        undo.append(hook_points.remove_spliced)
        splicing.attach(model, _EngineSplicer(entries))
        undo.append(lambda: splicing.detach(model))
        _hook_bridge(model, entries, undo)
        _CURRENT[model] = spliced
        undo.append(lambda: _CURRENT.pop(model, None))
        yield spliced
    finally:
        for step in reversed(undo):
            step()
