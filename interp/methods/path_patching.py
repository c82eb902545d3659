"""Path patching (Wang et al. 2022): the effect of senders on the output *through* chosen receivers.

Activation patching a head measures its total effect, through every path. Path patching isolates
the paths from sender heads to receivers (heads' query/key/value inputs, or the logits):

1. Run the base prompts with every attention head frozen to its base-run output, except the
   senders, which take their source-run output. MLPs are recomputed, so paths sender -> MLP ->
   receiver count as in the original paper; paths through other heads do not.
2. Receivers = logits: the metric of that run is the answer. Receivers = heads: read their q (or
   k, or v) from that run, then run the base prompts again normally with only those receiver
   inputs replaced, and measure the metric.

This is exact (two real forward passes per sender set), not the gradient approximation. With
`senders=None` every head below the earliest receiver is tried alone as the sender, many per
forward pass; heads that cannot send (at or after a receiver's layer) get 0 and `valid = False`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.base.errors import InputError
from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptPairs
from interp.engine.edits import Replace, Site
from interp.engine.forward import PhiWeights, RunCache, forward, unembed
from interp.methods.contrastive import Direction, contrast
from interp.methods.result import EffectResult
from interp.model.loading import HookedPhi

Head = tuple[int, int]


def _sender_mask(
    w: PhiWeights, senders: list[list[Head]], layer: int, device
) -> Bool[Tensor, "sender_set head"]:
    """[n_sets, head] True where that head of `layer` is a sender in that set."""
    mask = torch.zeros(len(senders), w.n_heads, dtype=torch.bool, device=device)
    for i, heads in enumerate(senders):
        for sender_layer, head in heads:
            if sender_layer == layer:
                mask[i, head] = True
    return mask


def _frozen_run(w: PhiWeights, base: RunCache, source: RunCache, senders: list[list[Head]]) -> list[Tensor]:
    """Residual stream entering each layer (and the final one) with heads frozen but the senders: the
    block with every head's `z` replaced (no attention computed), MLPs recomputed."""
    x = base.resid_pre[0].expand(len(senders), *base.resid_pre[0].shape)  # set batch pos d_model
    edits = {}
    for layer in range(w.n_layers):
        mask = _sender_mask(w, senders, layer, x.device)[:, None, None, :, None]  # set batch pos head d_head
        edits[f"blocks.{layer}.attn.hook_z"] = Replace(torch.where(mask, source.z[layer], base.z[layer]))
    run = forward(w, x, edits)
    return [*run.resid_pre, run.resid_final]


def _receiver_run(
    w: PhiWeights, base: RunCache, frozen: list[Tensor], receivers: list[Head], part: Literal["q", "k", "v"]
) -> Float[Tensor, "... batch d_model"]:
    """Final-position residual of the base run with receivers' `part` input (`hook_{part}_input`, their
    own LayerNorm and projection) taken from the frozen run's residual stream."""
    n_sets = frozen[0].shape[0]
    x = base.resid_pre[0].expand(n_sets, *base.resid_pre[0].shape)
    edits = {}
    for layer in sorted({receiver_layer for receiver_layer, _ in receivers}):
        mask = torch.zeros(w.n_heads, 1, dtype=torch.bool, device=x.device)  # head 1
        mask[[head for receiver_layer, head in receivers if receiver_layer == layer]] = True

        def from_frozen(
            inputs: Float[Tensor, "sender_set batch pos head d_model"], site: Site, mask=mask, layer=layer
        ) -> Float[Tensor, "sender_set batch pos head d_model"]:
            return torch.where(mask, frozen[layer][..., None, :], inputs)  # set batch pos head d_model

        edits[f"blocks.{layer}.hook_{part}_input"] = from_frozen
    return forward(w, x, edits, last_only=True).resid_final[..., -1, :]


def _heads(heads: Sequence[Head], n_layers: int, n_heads: int, what: str) -> list[Head]:
    """Heads as (layer, head) tuples; every one outside the model (negative included) is named at once."""
    checked = []
    for item in heads:
        if len(item) != 2:
            raise InputError(f"{what} must be [layer, head] pairs; got {list(item)!r}")
        checked.append(tuple(int(i) for i in item))
    bad = [list(h) for h in checked if not (0 <= h[0] < n_layers and 0 <= h[1] < n_heads)]
    if bad:
        raise InputError(
            f"{what} {bad} are not heads of this model (layers 0..{n_layers - 1}, heads 0..{n_heads - 1}; "
            "negative indices are not allowed)"
        )
    return checked


def check_path(
    senders: Sequence[Head] | None, receivers: Sequence[Head] | str, n_layers: int, n_heads: int
) -> tuple[list[Head] | None, list[Head], int]:
    """Senders (None: every head alone) and receivers ('logits' or heads) checked against the model, as
    (senders, receivers, the earliest receiver layer); the one check the API and configs share."""
    if isinstance(receivers, str):
        if receivers != "logits":
            raise InputError(f"receivers={receivers!r} is not allowed; use 'logits' or [[layer, head], ...].")
        receivers = []
    else:
        receivers = _heads(receivers, n_layers, n_heads, "receivers")
        if not receivers:
            raise InputError("receivers is empty: give 'logits' or at least one [layer, head].")
    first = min((layer for layer, _ in receivers), default=n_layers)
    if senders is not None:
        senders = _heads(
            senders, n_layers, n_heads, "senders"
        )  # an empty set patches nothing: the base metric
        late = [list(s) for s in senders if s[0] >= first]
        if late:
            raise InputError(f"senders {late} are not before the earliest receiver layer {first}")
    return senders, receivers, first


@torch.no_grad()
def path_patch(
    model: HookedPhi,
    pairs: PromptPairs,
    receivers: Sequence[Head] | Literal["logits"] = "logits",
    *,
    receiver_input: Literal["q", "k", "v"] = "q",
    senders: Sequence[Head] | None = None,
    metric: MetricKind | Metric = "logit_diff",
    direction: Direction = "noising",
    reduce: Literal["mean", "none"] = "mean",
    max_sets_per_forward: int = 64,
) -> EffectResult:
    """Path-patching metric for `senders` as one set, or for every single head when `senders` is None.

    Default direction is noising, as in Wang et al.: base = clean prompts, senders take their
    corrupted-run outputs, and a drop in the metric shows the path matters.
    """
    if receiver_input not in ("q", "k", "v"):
        raise InputError(f"receiver_input={receiver_input!r} is not allowed; use 'q', 'k' or 'v'.")
    core = contrast(model, pairs, metric, direction=direction)
    w = core.weights
    to_logits = isinstance(receivers, str)
    senders, receivers, first_receiver = check_path(senders, receivers, w.n_layers, w.n_heads)
    if senders is None:
        sets = [[(layer, head)] for layer in range(w.n_layers) for head in range(w.n_heads)]
    else:
        sets = [senders]
    valid = torch.tensor([all(layer < first_receiver for layer, _ in s) for s in sets])
    n = len(pairs)
    values = torch.zeros(len(sets), n)
    for group in core.groups:
        base, source = core.base(group), core.source(group)
        for start in range(0, len(sets), max_sets_per_forward):
            chunk = sets[start : start + max_sets_per_forward]
            frozen = _frozen_run(w, base, source, chunk)
            final = (
                frozen[-1][..., -1, :]
                if to_logits
                else _receiver_run(w, base, frozen, receivers, receiver_input)
            )
            logits = unembed(w, final)  # [sets, batch, d_vocab]
            for i, row in enumerate(logits):
                values[start + i, group.index] = core.measure(row, group.index).float().cpu()
    # heads that cannot send (at or after the first receiver) leave the base run as it is
    values[~valid] = core.base_values[None, :].expand(int((~valid).sum()), n)
    shaped = values.view(w.n_layers, w.n_heads, n) if senders is None else values[0]
    return core.result(
        "path_patch",
        ("layer", "head") if senders is None else (),
        shaped,
        measures="metric",
        reduce=reduce,
        extra={
            "receivers": "logits" if to_logits else [list(r) for r in receivers],
            "receiver_input": receiver_input,
            "valid": valid.view(w.n_layers, w.n_heads) if senders is None else valid[0],
        },
    )
