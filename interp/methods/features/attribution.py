"""Feature attribution: attribution patching on dictionary latents and error terms (Marks et al. 2024).

With the dictionaries spliced in (`interp.dictionaries.splice`, with the error term by default), each
latent and each error term is a node of the model. Linearising the metric around the base run
(corrupted when denoising, clean when noising; `interp.methods.contrastive`), a node's effect at a
position is estimated as

    latent i:  (a_i,source - a_i,base) * d metric / d a_i
    error:     (e_source - e_base) . d metric / d e
    skip:      (skip_source - skip_base) . d metric / d out      (skip transcoders' linear path)

from one source forward, one base forward and one backward through the engine (`interp.engine.forward`
spliced). The written activation is decode(a) + skip + e, so at each position a site's nodes sum to the
attribution of the whole activation there, (x_source - x_base) . d metric / d x (tested against
`attribution_patch`). The estimate is exact where the metric is linear in the nodes and close for small
changes; check the top features with `patch_latents`, which patches them exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Literal

import einops
import torch
from torch import Tensor

from interp.base.errors import InputError
from interp.data.metrics import Metric, MetricKind
from interp.data.prompts import PromptPairs
from interp.dictionaries.base import Dictionary
from interp.engine.edits import Keep
from interp.engine.forward import PhiWeights, forward
from interp.methods.contrastive import Direction, base_and_source, contrast
from interp.methods.features.patching import spliced_for
from interp.methods.result import EffectResult
from interp.model.loading import HookedPhi


def feature_labels(spliced, dictionaries: Sequence[Dictionary]) -> list[str]:
    """The feature axis: `<hook written>[<latent>]` for every latent, then `[error]` and `[skip]` nodes."""
    labels = []
    for d in dictionaries:
        writes = spliced.entry(d).writes
        labels += [f"{writes}[{i}]" for i in range(d.d_sae)]
        if spliced.error:
            labels.append(f"{writes}[error]")
        if d.W_skip is not None:
            labels.append(f"{writes}[skip]")
    return labels


def feature_attribution(
    model: HookedPhi,
    dictionaries: Dictionary | Sequence[Dictionary],
    pairs: PromptPairs,
    metric: MetricKind | Metric = "logit_diff",
    *,
    direction: Direction = "denoising",
    error: bool | None = None,
    reduce: Literal["mean", "none"] = "mean",
) -> EffectResult:
    """Estimated effect (patched metric - base metric) of patching each latent, error term and skip path
    at each position from the source run: an `EffectResult` over ("feature", "pos") with feature labels."""
    if isinstance(dictionaries, Dictionary):
        dictionaries = [dictionaries]
    dictionaries = list(dictionaries)
    if not dictionaries or not all(isinstance(d, Dictionary) for d in dictionaries):
        raise InputError("feature_attribution takes a Dictionary or a non-empty list of them.")
    if not pairs.same_length:
        raise InputError("feature_attribution resolves positions: give prompts of one token length.")
    with ExitStack() as stack:
        spliced = spliced_for(stack, model, dictionaries, error)
        core = contrast(model, pairs, metric, direction=direction, keep="logits")
        w = PhiWeights.from_model(model)
        base_tokens, source_tokens = base_and_source(pairs.clean_tokens, pairs.corrupted_tokens, direction)
        device = w.W_E.device
        entries = [spliced.entry(d) for d in dictionaries]
        points = [e.name(p) for e in entries for p in e.points]
        reads = sorted({e.reads for e in entries if e.dictionary.W_skip is not None})
        with torch.no_grad():
            source: dict[str, Tensor] = {}
            forward(w, w.W_E[source_tokens.to(device)], {n: Keep(source) for n in points + reads})
        with torch.enable_grad():
            base: dict[str, Tensor] = {}
            edits = {n: Keep(base, grad=True) for n in points} | {n: Keep(base) for n in reads}
            run = forward(w, w.W_E[base_tokens.to(device)], edits)
            total = core.measure(run.logits(w), core.everyone).sum()  # prompts are independent
            grads = dict(zip(points, torch.autograd.grad(total, [base[n] for n in points]), strict=True))
        nodes = []
        for e in entries:
            d = e.dictionary
            acts = e.name("hook_acts")
            delta = source[acts] - base[acts].detach()
            nodes.append(einops.rearrange(delta * grads[acts], "batch pos d_sae -> d_sae pos batch"))
            if spliced.error:
                err = e.name("hook_error")
                effect = ((source[err] - base[err].detach()) * grads[err]).sum(-1)
                nodes.append(einops.rearrange(effect, "batch pos -> 1 pos batch"))
            if d.W_skip is not None:
                with torch.no_grad():
                    skip = d.skip(source[e.reads].to(d.W_dec.device)) - d.skip(
                        base[e.reads].to(d.W_dec.device)
                    )
                effect = (skip.to(grads[e.name("hook_recons")].device) * grads[e.name("hook_recons")]).sum(-1)
                nodes.append(einops.rearrange(effect, "batch pos -> 1 pos batch"))
        values = torch.cat([n.detach().float().cpu() for n in nodes])
        result = core.result(
            "feature_attribution",
            ("feature", "pos"),
            values,
            measures="change",
            reduce=reduce,
            extra={"estimate_of": "patched metric - base metric", "error": spliced.error},
        )
        return dataclasses.replace(result, labels={"feature": feature_labels(spliced, dictionaries)})
