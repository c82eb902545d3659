"""The local replacement model of one prompt: transcoders in place of Phi's MLPs, the rest frozen.

Phi's block is parallel, `x_out = x + Attn(LN(x)) + MLP(LN(x))`, so a per-layer transcoder reads the
block's LayerNorm (`blocks.L.ln1.hook_normalized` by default; `ln1.hook_out` or `hook_resid_pre` also
work) and writes `blocks.L.hook_mlp_out`, in parallel with attention. From the real forward on the prompt
(`replacement_model`) it keeps:

- every LayerNorm scale (`ln1.hook_scale` per block, the final one) and every attention pattern, which
  the replacement model takes as constants: with them frozen the residual stream is a linear function
  of what writes into it;
- every transcoder's active features (layer, position, feature) and their activations;
- an error node per (layer, position): the real MLP output minus the transcoder's, exactly what the
  transcoder misses, so MLP out = features' decoder rows x activations + b_dec (+ skip) + error, and
  the replacement model's logits equal the real model's (to float rounding; tested).

Three forwards run from it (`run`), one edit protocol (`interp.engine.edits`) for all:

- `frozen`: the linear model: patterns and scales frozen, each MLP output the given features and
  errors (what attribution differentiates, and how its edges are checked);
- `local`: patterns, scales and errors frozen, the transcoders live (their activation function
  recomputes every feature from its input), interventions on features applied: the local
  replacement model's answer to "what if this feature were off";
- `spliced`: the real model (attention and LayerNorm live) with each MLP's output replaced by its
  transcoder's (`errors="frozen"` adds the prompt's error nodes, so with no intervention it is the
  real model; `"none"` leaves them out).

Every active feature's activation equals its pre-activation (ReLU, JumpReLU, TopK and BatchTopK keep
a feature's pre-activation or zero), so a feature node's value is its input: the sum of its incoming
edges and its bias terms (`interp.methods.graphs.attribution`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.dictionaries.base import Dictionary
from interp.engine.edits import Freeze, Keep, Site
from interp.engine.forward import forward
from interp.engine.hook_points import split_name
from interp.engine.weights import PhiWeights
from interp.model.hooks import refuse_user_hooks
from interp.model.loading import HookedPhi

INPUT_POINTS = ("ln1.hook_normalized", "ln1.hook_out", "hook_resid_pre")
OUTPUT_POINT = "hook_mlp_out"
Mode = Literal["frozen", "local", "spliced"]
Errors = Literal["frozen", "none"]

# (layer, pos, input) -> the MLP output [batch pos d_model] of that layer
MlpFn = Callable[[int, Tensor], Tensor]


@dataclass(frozen=True)
class Intervention:
    """Set feature `feature` of layer `layer`'s transcoder to `value` at position `pos` (0: ablate)."""

    layer: int
    pos: int
    feature: int
    value: float = 0.0


def check_transcoders(transcoders: Sequence[Dictionary], n_layers: int, d_model: int) -> list[str]:
    """Each layer's transcoder checked (a transcoder, reading a supported point of its layer, writing its
    MLP output, widths d_model); returns the input point (short name) of each layer."""
    if len(transcoders) != n_layers:
        raise InputError(
            f"{len(transcoders)} transcoders given; the replacement model needs one per layer "
            f"({n_layers}), in layer order."
        )
    points = []
    for layer, tc in enumerate(transcoders):
        if not isinstance(tc, Dictionary):
            raise InputError(f"transcoders[{layer}] is a {type(tc).__name__}, not a Dictionary.")
        if tc.kind == "sae":
            raise InputError(f"transcoders[{layer}] is an SAE; an attribution graph needs transcoders.")
        in_layer, point = split_name(tc.hook_name or "")
        out_layer, out_point = split_name(tc.hook_name_out or "")
        if in_layer != layer or point not in INPUT_POINTS:
            allowed = ", ".join(f"blocks.{layer}.{p}" for p in INPUT_POINTS)
            raise InputError(
                f"transcoders[{layer}] reads {tc.hook_name!r}; layer {layer}'s reads one of {allowed}."
            )
        if out_layer != layer or out_point != OUTPUT_POINT:
            raise InputError(
                f"transcoders[{layer}] writes {tc.hook_name_out!r}; layer {layer}'s writes "
                f"blocks.{layer}.{OUTPUT_POINT} (its MLP's output)."
            )
        if tc.d_in != d_model or tc.d_out != d_model:
            raise InputError(
                f"transcoders[{layer}] maps {tc.d_in} -> {tc.d_out} dims; this model's are {d_model} -> {d_model}."
            )
        if getattr(tc.cfg, "rescale_acts_by_decoder_norm", False):
            raise InputError(
                f"transcoders[{layer}] rescales activations by decoder norms, so its activations are not its "
                "decoder's coefficients; fold the norms into W_enc / W_dec first."
            )
        points.append(point)
    return points


@dataclass
class ReplacementModel:
    """One prompt's replacement model (see the module docstring); built by `replacement_model`."""

    weights: PhiWeights
    transcoders: list[Dictionary]
    input_points: list[str]  # each layer's transcoder input, short name
    tokens: Int[Tensor, " pos"]
    scales: list[Float[Tensor, "pos 1"]]  # ln1.hook_scale per layer
    patterns: list[Float[Tensor, "head dest_pos src_pos"]]
    final_scale: Float[Tensor, "pos 1"]
    active: Int[Tensor, "active 3"]  # (layer, pos, feature), sorted
    activations: Float[Tensor, " active"]  # each active feature's activation (float32)
    errors: Float[Tensor, "layer pos d_model"]  # real MLP out - transcoder out (float32)
    logits: Float[Tensor, "pos d_vocab"]  # the real model's

    @property
    def n_layers(self) -> int:
        return self.weights.n_layers

    @property
    def n_pos(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def device(self) -> torch.device:
        return self.weights.W_E.device

    @property
    def dtype(self) -> torch.dtype:
        return self.weights.W_E.dtype

    def layer_slices(self) -> list[slice]:
        """Where each layer's active features lie in `active` (sorted by layer)."""
        counts = torch.bincount(self.active[:, 0], minlength=self.n_layers).tolist()
        ends = torch.tensor(counts).cumsum(0).tolist()
        return [slice(end - count, end) for count, end in zip(counts, ends, strict=True)]

    def decoder_vectors(self) -> Float[Tensor, "active d_model"]:
        """Each active feature's write: activation x its decoder row (float32)."""
        rows = [
            self.transcoders[layer].W_dec.detach()[self.active[s, 2]]
            for layer, s in enumerate(self.layer_slices())
        ]
        return torch.cat(rows).float() * self.activations[:, None]

    def encoder_vectors(self) -> Float[Tensor, "active d_model"]:
        """Each active feature's encoder column: its pre-activation is this . input + b_enc (float32)."""
        rows = [
            self.transcoders[layer].W_enc.detach().T[self.active[s, 2]]
            for layer, s in enumerate(self.layer_slices())
        ]
        return torch.cat(rows).float()

    def feature_writes(
        self, activations: Float[Tensor, "*batch active"] | None = None
    ) -> list[Float[Tensor, "*batch pos d_model"]]:
        """Per layer, what the active features write at each position (given `activations`, by default
        the prompt's), b_dec included (float32)."""
        acts = self.activations if activations is None else activations
        batch = acts.shape[:-1]
        writes = []
        for layer, s in enumerate(self.layer_slices()):
            tc = self.transcoders[layer]
            out = tc.b_dec.detach().float().expand(*batch, self.n_pos, tc.d_out).clone()
            rows = tc.W_dec.detach().float()[self.active[s, 2]]  # [n, d_model]
            contributions = acts[..., s, None] * rows  # [*batch, n, d_model]
            out.index_add_(out.dim() - 2, self.active[s, 1].to(out.device), contributions)
            writes.append(out)
        return writes

    # --- the forwards --------------------------------------------------------------------------
    def run(
        self,
        embed: Float[Tensor, "batch pos d_model"],
        mlp: MlpFn,
        *,
        frozen: bool,
        keep: dict[str, Tensor] | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """The forward from `embed` with each layer's MLP output `mlp(layer, input)`; attention patterns
        and LayerNorm scales frozen if `frozen`. Returns the final LayerNorm's output. `keep` receives each
        layer's transcoder input (`blocks.L.<point>`) and residual output (`blocks.L.hook_resid_post`),
        with their autograd graphs."""
        store: dict[str, Tensor] = {} if keep is None else keep
        edits: dict[str, list] = {}
        for layer in range(self.n_layers):
            prefix = f"blocks.{layer}."
            if frozen:
                edits[prefix + "ln1.hook_scale"] = [Freeze(self.scales[layer])]
                edits[prefix + "attn.hook_pattern"] = [Freeze(self.patterns[layer])]
            edits.setdefault(prefix + self.input_points[layer], []).append(Keep(store, grad=True))
            edits[prefix + OUTPUT_POINT] = [_MlpEdit(layer, prefix + self.input_points[layer], store, mlp)]
            edits[prefix + "hook_resid_post"] = [Keep(store, grad=True)]
        run = forward(self.weights, embed, edits)
        return self.final_norm(run.resid_final, frozen)

    def final_norm(
        self, resid: Float[Tensor, "batch pos d_model"], frozen: bool = True
    ) -> Float[Tensor, "batch pos d_model"]:
        """The final LayerNorm, its scale frozen at the prompt's (or live)."""
        w = self.weights
        centred = resid - resid.mean(-1, keepdim=True)
        scale = self.final_scale if frozen else (centred.pow(2).mean(-1, keepdim=True) + w.eps).sqrt()
        return centred / scale * w.ln_f_w + w.ln_f_b

    def unembed(self, normed: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_vocab"]:
        return torch.nn.functional.linear(normed, self.weights.W_U, self.weights.b_U)

    def embed(self, batch: int = 1) -> Float[Tensor, "batch pos d_model"]:
        """The prompt's token embeddings, `batch` copies."""
        return self.weights.W_E[self.tokens].expand(batch, -1, -1)

    def frozen_logits(
        self, activations: Float[Tensor, "batch active"] | None = None
    ) -> Float[Tensor, "batch pos d_vocab"]:
        """Logits of the linear replacement model with the features at `activations` (default: the
        prompt's) and the prompt's error nodes."""
        acts = self.activations[None] if activations is None else activations
        writes = self.feature_writes(acts)

        def mlp(layer: int, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
            out = writes[layer] + self.errors[layer] + self.transcoders[layer].skip(x)
            return out.to(x.dtype)

        with torch.no_grad():
            return self.unembed(self.run(self.embed(acts.shape[0]), mlp, frozen=True))

    def intervene(
        self,
        interventions: Sequence[Intervention],
        mode: Literal["local", "spliced"] = "local",
        *,
        errors: Errors = "frozen",
    ) -> InterventionRun:
        """Logits with `interventions` applied and every feature recomputed by its transcoder: in the
        local replacement model (`local`: patterns, scales and errors frozen) or the real model with the
        transcoders substituted (`spliced`; `errors="none"` drops the error nodes). Also counts the
        features whose on / off state differs from the prompt's (the graph is exact when none does)."""
        if mode not in ("local", "spliced"):
            raise InputError(f"mode={mode!r} is not allowed; use 'local' or 'spliced'.")
        if errors not in ("frozen", "none"):
            raise InputError(f"errors={errors!r} is not allowed; use 'frozen' or 'none'.")
        if mode == "local" and errors != "frozen":
            raise InputError(
                "the local replacement model keeps its error nodes; errors='none' is for 'spliced'."
            )
        by_layer = self._interventions_by_layer(interventions)
        flipped = [0]
        active_sets = [
            set(map(tuple, self.active[s, 1:].tolist())) for s in self.layer_slices()
        ]  # (pos, feature) per layer

        def mlp(layer: int, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
            tc = self.transcoders[layer]
            acts = tc.encode(x[0])  # [pos, d_sae]
            now = set(map(tuple, acts.nonzero().tolist()))
            flipped[0] += len(now ^ active_sets[layer])
            for pos, feature, value in by_layer[layer]:
                acts[pos, feature] = value
            out = tc.decode(acts) + tc.skip(x[0])
            if errors == "frozen":
                out = out + self.errors[layer]
            return out[None].to(x.dtype)

        with torch.no_grad():
            logits = self.unembed(self.run(self.embed(), mlp, frozen=mode == "local"))[0]
        return InterventionRun(logits, flipped[0])

    def _interventions_by_layer(self, interventions: Sequence[Intervention]) -> list[list[tuple]]:
        by_layer: list[list[tuple]] = [[] for _ in range(self.n_layers)]
        for item in interventions:
            if not isinstance(item, Intervention):
                raise InputError(f"interventions are Intervention(layer, pos, feature, value), not {item!r}.")
            if not 0 <= item.layer < self.n_layers or not 0 <= item.pos < self.n_pos:
                raise InputError(
                    f"{item} is outside the prompt: layers 0..{self.n_layers - 1}, positions 0..{self.n_pos - 1}."
                )
            if not math.isfinite(item.value):
                raise InputError(f"{item}: a feature's value must be a finite number.")
            d_sae = self.transcoders[item.layer].d_sae
            if not 0 <= item.feature < d_sae:
                raise InputError(f"{item}: layer {item.layer}'s transcoder has features 0..{d_sae - 1}.")
            by_layer[item.layer].append((item.pos, item.feature, float(item.value)))
        return by_layer


@dataclass
class InterventionRun:
    """Logits of an intervened forward, and how many (layer, pos, feature) switched on or off."""

    logits: Float[Tensor, "pos d_vocab"]
    flipped: int


class _MlpEdit:
    """The edit at `hook_mlp_out`: the MLP's output computed from this layer's transcoder input."""

    def __init__(self, layer: int, input_name: str, store: dict[str, Tensor], mlp: MlpFn):
        self.layer, self.input_name, self.store, self.mlp = layer, input_name, store, mlp

    def __call__(
        self, tensor: Float[Tensor, "batch pos d_model"], site: Site
    ) -> Float[Tensor, "*batch pos d_model"]:
        return self.mlp(self.layer, self.store[self.input_name])


def replacement_model(
    model: HookedPhi | PhiWeights, tokens: Int[Tensor, " pos"], transcoders: Sequence[Dictionary]
) -> ReplacementModel:
    """The replacement model of `tokens` (one prompt): the real forward's LayerNorm scales and attention
    patterns, each transcoder's active features on it and the error nodes."""
    if isinstance(model, PhiWeights):
        w = model
    else:
        refuse_user_hooks(model, "the replacement model")
        w = PhiWeights.from_model(model)
    tokens = torch.as_tensor(tokens)
    if tokens.dim() != 1 or tokens.numel() == 0:
        raise InputError(
            f"tokens are one prompt's token ids [pos], not a tensor of shape {tuple(tokens.shape)}."
        )
    tokens = tokens.to(w.W_E.device)
    d_model = w.W_E.shape[1]
    points = check_transcoders(transcoders, w.n_layers, d_model)
    for layer, tc in enumerate(transcoders):
        if tc.W_enc.device != w.W_E.device:
            raise InputError(
                f"transcoders[{layer}] is on {tc.W_enc.device}, the model on {w.W_E.device}; move it there "
                "(`transcoder.to(device)`)."
            )
    store: dict[str, Tensor] = {}
    edits = {}
    for layer, point in enumerate(points):
        for name in {"ln1.hook_scale", "attn.hook_pattern", OUTPUT_POINT, point}:
            edits[f"blocks.{layer}.{name}"] = Keep(store)
    with torch.no_grad():
        run = forward(w, w.W_E[tokens][None], edits)
        resid = run.resid_final[0]
        centred = resid - resid.mean(-1, keepdim=True)
        final_scale = (centred.pow(2).mean(-1, keepdim=True) + w.eps).sqrt()
        logits = torch.nn.functional.linear(centred / final_scale * w.ln_f_w + w.ln_f_b, w.W_U, w.b_U)
        active, values, errors = [], [], []
        for layer, (tc, point) in enumerate(zip(transcoders, points, strict=True)):
            x = store[f"blocks.{layer}.{point}"][0]
            acts = tc.encode(x.to(tc.W_enc.device))
            found = acts.nonzero()
            active.append(torch.cat([torch.full_like(found[:, :1], layer), found], dim=1))
            values.append(acts[found[:, 0], found[:, 1]])
            written = tc.decode(acts) + tc.skip(x)
            errors.append(store[f"blocks.{layer}.{OUTPUT_POINT}"][0].float() - written.float())
    prefix = "blocks.{}."
    return ReplacementModel(
        weights=w,
        transcoders=list(transcoders),
        input_points=points,
        tokens=tokens,
        scales=[store[prefix.format(layer) + "ln1.hook_scale"][0] for layer in range(w.n_layers)],
        patterns=[store[prefix.format(layer) + "attn.hook_pattern"][0] for layer in range(w.n_layers)],
        final_scale=final_scale,
        active=torch.cat(active).cpu(),
        activations=torch.cat(values).float().to(w.W_E.device),
        errors=torch.stack(errors).to(w.W_E.device),
        logits=logits,
    )
