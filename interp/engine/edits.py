"""The one edit protocol of the engine: change (or read) an activation where the forward computes it.

An edit is a function `fn(tensor, site) -> tensor`, attached to an edit point by its TransformerLens
hook name (`interp.engine.hook_points`): the block body calls it where it computes that activation, in
TransformerLens's layout, and goes on with what it returns. `site` says which hook point and which
absolute positions the tensor's position axis holds (`dest_pos` for scores and patterns). Edits at one
point run in the order given; an edit must return a new tensor rather than write into its argument
(split receiver inputs arrive as broadcast views of the residual stream).

The ready-made edits:

- `Keep(store)`: read: store the activation under its hook name (detached, or with its autograd graph:
  `grad=True`, e.g. to differentiate at it), leave it unchanged;
- `Replace(value)`: take `value` instead (another run's activation, a patch);
- `Freeze(value=None)`: take `value` (by default the activation itself) with its gradient stopped: what a
  linearised replacement model does to LayerNorm scales and attention patterns;
- `Add(delta)`: add a direction (steering, a sender's change).

Values broadcast against the activation, so a value with a leading *variant* axis (`variant batch pos
...`) makes the rest of the forward run every variant at once: many patches per block call. A `Replace`
at `attn.hook_z` replaces every head's output: the block then computes no attention (and returns no
keys or values).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass

from jaxtyping import Float
from torch import Tensor

from interp.engine.hook_points import check_points, split_name


@dataclass(frozen=True)
class Site:
    """Where an edit function is called: the hook point and the absolute positions on its position axis."""

    name: str
    layer: int | None
    start: int  # absolute position of the first entry on the position axis
    n: int  # entries on the position axis

    @property
    def stop(self) -> int:
        return self.start + self.n


EditFn = Callable[[Tensor, Site], Tensor]
# hook name -> the edits there, in order (one function or a sequence)
Edits = Mapping[str, EditFn | Sequence[EditFn]]
# a block's edits: short name (after "blocks.{layer}.") -> its functions
BlockEdits = Mapping[str, Sequence[EditFn]]


class Keep:
    """Store the activation in `store[site.name]` (detached unless `grad`), unchanged. With `grad`, the
    stored tensor is its own autograd node, so a gradient taken at it is this point's alone."""

    def __init__(self, store: MutableMapping[str, Tensor], *, grad: bool = False):
        self.store, self.grad = store, grad

    def __call__(self, tensor: Float[Tensor, " ..."], site: Site) -> Float[Tensor, " ..."]:
        if self.grad:
            tensor = tensor.view_as(tensor)
            self.store[site.name] = tensor
        else:
            self.store[site.name] = tensor.detach()
        return tensor


class Replace:
    """Take `value` instead of the activation (broadcast against it; a leading variant axis allowed)."""

    def __init__(self, value: Float[Tensor, " ..."]):
        self.value = value

    def __call__(self, tensor: Float[Tensor, " ..."] | None, site: Site) -> Float[Tensor, " ..."]:
        return self.value


class Freeze:
    """Take `value` (the activation itself when None) with its gradient stopped."""

    def __init__(self, value: Float[Tensor, " ..."] | None = None):
        self.value = value

    def __call__(self, tensor: Float[Tensor, " ..."], site: Site) -> Float[Tensor, " ..."]:
        return (tensor if self.value is None else self.value).detach()


class Add:
    """Add `delta` (broadcast against the activation) to it."""

    def __init__(self, delta: Float[Tensor, " ..."]):
        self.delta = delta

    def __call__(self, tensor: Float[Tensor, " ..."], site: Site) -> Float[Tensor, " ..."]:
        return tensor + self.delta


def by_layer(
    edits: Edits | None, n_layers: int, offered: Sequence[str] | None = None
) -> tuple[list[dict[str, list[EditFn]]], dict[str, list[EditFn]]]:
    """Edits checked against the schema (of `offered` block points, if given) and grouped: per block,
    short name -> functions; and the model-level points (hook_embed, ln_final.hook_out, hook_unembed)."""
    grouped: list[dict[str, list[EditFn]]] = [{} for _ in range(n_layers)]
    model: dict[str, list[EditFn]] = {}
    if not edits:
        return grouped, model
    check_points(edits, n_layers, offered)
    for name, fns in edits.items():
        fns = [fns] if callable(fns) else list(fns)
        if not fns:
            continue
        layer, point = split_name(name)
        (model if layer is None else grouped[layer]).setdefault(point, []).extend(fns)
    return grouped, model


def apply(
    fns: Sequence[EditFn] | None, tensor: Float[Tensor, " ..."] | None, site: Site
) -> Float[Tensor, " ..."]:
    """`tensor` through every edit in `fns`, in order."""
    for fn in fns or ():
        tensor = fn(tensor, site)
    return tensor
