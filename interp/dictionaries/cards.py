"""Feature cards: what one latent of a dictionary reads, where it fires and what it writes.

A card holds, for one latent, the statistics of `feature_stats` over a corpus (density, max / mean
activation, the histogram of its non-zero activations, its top contexts with the activation on every
token) and two input-independent readings of its weights:

- **promoted and suppressed tokens** (`logit_effects`): the decoder direction `W_dec[f]` read through
  the unembedding the way TransformerLens's logit lens reads a direction on a processed model
  (`fold_ln`, `center_writing_weights`, `center_unembed`, what SAEDashboard and Neuronpedia use): the
  final LayerNorm's linear part applied (the direction centred over d_model, times `ln_final.w`), then
  `W_U`, then centred over the vocabulary. The LayerNorm's scale (one number per position) and the
  biases `ln_final.b`, `b_U` are left out: they do not depend on the latent. So the values equal
  `W_dec[f] @ W_U` of the folded model (`load_model(..., weights="folded")`, tested), in logits per
  unit of activation, and only the ranking and the differences between tokens carry meaning. Only for
  a dictionary that writes the residual stream (`hook_resid_pre/post`, `hook_attn_out`,
  `hook_mlp_out`, `hook_mlp_in`, `hook_embed`); others have no direct path to the logits.
- **input directions** (`input_directions`, for transcoders, and for SAEs that read the residual
  stream too): the encoder column `W_enc[:, f]` mapped back to the residual stream it reads (through
  the block LayerNorm's linear part for `ln1.hook_normalized` / `ln1.hook_out`), then scored against
  the token embeddings (the direct path from the embedding: which tokens drive it) and against
  earlier dictionaries' decoder rows (virtual weights `W_dec_up[g] . r`, Dunefsky et al. 2024), and
  through the OV circuits of earlier layers' attention heads (`heads`, layer 0 by default): a token's
  embedding through that layer's LayerNorm (its linear part: centred, times `ln_w`, the per-position
  scale and the biases left out, as above), then the head's `W_V W_O`, scored against the reading `r`.
  That is what the head writes into the latent when it attends to the token; at layer 0 the head's
  input is the embedding itself, at later layers only its direct part.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.data.tokens import real_token_ids, str_tokens
from interp.dictionaries.base import Dictionary
from interp.dictionaries.feature_stats import PAD, FeatureStats, feature_stats
from interp.engine.weights import PhiWeights
from interp.model.loading import HookedPhi

RESIDUAL = ("hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "hook_mlp_in")
_BLOCK_HOOK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _block_and_point(hook: str | None) -> tuple[int | None, str]:
    match = _BLOCK_HOOK.match(hook or "")
    return (int(match.group(1)), match.group(2)) if match else (None, hook or "")


def writes_residual(hook: str | None) -> bool:
    """Whether a dictionary writing `hook` writes (into) the residual stream."""
    _, point = _block_and_point(hook)
    return point in RESIDUAL or hook == "hook_embed"


@torch.no_grad()
def logit_effects(
    model: HookedPhi, dictionary: Dictionary, features: Sequence[int]
) -> Float[Tensor, "feature d_vocab"]:
    """Each latent's decoder direction through the final LayerNorm's linear part and the unembedding,
    centred over the vocabulary (the module docstring says why and what it equals)."""
    if not writes_residual(dictionary.hook_name_out):
        raise InputError(
            f"{dictionary.hook_name_out!r} is not the residual stream, so its decoder directions have no "
            f"direct path to the logits; promoted tokens are read for dictionaries writing "
            f"{', '.join(RESIDUAL)} (of a block) or hook_embed."
        )
    w = PhiWeights.from_model(model)
    if dictionary.d_out != w.W_U.shape[1]:
        raise InputError(
            f"the dictionary writes {dictionary.d_out} dims; the model's d_model is {w.W_U.shape[1]}."
        )
    directions = dictionary.W_dec[torch.as_tensor(list(features), dtype=torch.long)].float().cpu()
    centred = directions - directions.mean(-1, keepdim=True)
    effects = (centred * w.ln_f_w.float().cpu()) @ w.W_U.float().cpu().T
    return effects - effects.mean(-1, keepdim=True)


def residual_reading(
    model: HookedPhi, dictionary: Dictionary, features: Sequence[int]
) -> Float[Tensor, "feature d_model"]:
    """The residual-stream directions the encoder columns read: `W_enc[:, f]` for a hook in the
    residual basis; through the block's LayerNorm (centred, times its weight for `ln1.hook_out`) for
    `ln1.hook_normalized` / `ln1.hook_out`. Scale left out (the LayerNorm's 1/std is per position)."""
    layer, point = _block_and_point(dictionary.hook_name)
    columns = dictionary.W_enc[:, torch.as_tensor(list(features), dtype=torch.long)].T.float().cpu()
    if point in RESIDUAL or dictionary.hook_name == "hook_embed":
        return columns
    w = PhiWeights.from_model(model)
    if point == "ln1.hook_normalized" and layer is not None:
        return columns - columns.mean(-1, keepdim=True)
    if point == "ln1.hook_out" and layer is not None:
        weighted = columns * w.ln_w[layer].float().cpu()
        return weighted - weighted.mean(-1, keepdim=True)
    raise InputError(
        f"{dictionary.hook_name!r} is not read from the residual stream, so its encoder has no input "
        "direction there; input directions are read for residual-stream hooks and ln1.hook_normalized / ln1.hook_out."
    )


def _earlier(writer: str | None, reader: str | None) -> bool:
    """Whether what `writer` writes reaches `reader` through the residual stream."""
    w_layer, w_point = _block_and_point(writer)
    r_layer, r_point = _block_and_point(reader)
    if writer == "hook_embed":
        return True
    if w_layer is None or r_layer is None:
        return False
    if w_point == "hook_resid_pre":
        return w_layer <= r_layer
    return w_layer < r_layer or (w_layer == r_layer and r_point == "hook_resid_post")


def ov_scores(
    model: HookedPhi, reading: Float[Tensor, "feature d_model"], layer: int, ids: Int[Tensor, " n_tokens"]
) -> Float[Tensor, "head n_tokens feature"]:
    """Per head of `layer`: each token's embedding through the layer's LayerNorm (linear part) and
    the head's OV circuit `W_V W_O`, dotted with each reading direction."""
    w = PhiWeights.from_model(model)
    n_heads, d_head = w.n_heads, w.d_head
    v_rows = w.W_QKV[layer][2 * n_heads * d_head :].float().cpu()  # Linear weight: [head*d_head, d_model]
    W_V = einops.rearrange(v_rows, "(head d_head) d_model -> head d_model d_head", head=n_heads)
    W_O = w.W_O[layer].float().cpu()  # [head, d_head, d_model]
    embed = w.W_E.float().cpu()[ids]
    normed = (embed - embed.mean(-1, keepdim=True)) * w.ln_w[layer].float().cpu()  # [n_tokens, d_model]
    # reading pulled back through W_O then W_V: [head, feature, d_model]
    back = einops.einsum(W_V, W_O, reading, "head m d, head d o, feature o -> head feature m")
    return einops.einsum(normed, back, "n_tokens m, head feature m -> head n_tokens feature")


@torch.no_grad()
def input_directions(
    model: HookedPhi,
    dictionary: Dictionary,
    features: Sequence[int],
    upstream: Mapping[str, Dictionary] | None = None,
    k: int = 10,
    head_layers: Sequence[int] = (0,),
) -> list[dict]:
    """Per latent: the tokens whose embedding drives it most (`tokens`: (token, score) pairs, largest
    first), per earlier dictionary its latents with the largest virtual weight into it (`upstream`:
    (dictionary label, latent, weight)), and the (head, token) pairs whose OV path drives it most
    (`heads`: ("L0H3", token, score), largest first) over the heads of `head_layers` that write
    before the dictionary reads (the others are left out; none: no head path)."""
    reading = residual_reading(model, dictionary, features)  # [feature, d_model]
    w = PhiWeights.from_model(model)
    bad = [
        layer
        for layer in head_layers
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < w.n_layers
    ]
    if bad:
        raise InputError(f"head_layers {bad} are not layers of the model (0..{w.n_layers - 1}).")
    ids = real_token_ids(model)
    tokens = str_tokens(model.tokenizer, ids)
    embed = w.W_E.float().cpu()[ids] @ reading.T  # [token, feature]
    reaching = [
        layer
        for layer in sorted(set(head_layers))
        if _earlier(f"blocks.{layer}.hook_attn_out", dictionary.hook_name)
    ]
    heads = []  # per layer: [head, token, feature]
    for layer in reaching:
        heads.append((layer, ov_scores(model, reading, layer, ids)))
    scores = []
    for label, other in (upstream or {}).items():
        if not writes_residual(other.hook_name_out) or not _earlier(
            other.hook_name_out, dictionary.hook_name
        ):
            raise InputError(
                f"upstream dictionary {label!r} writes {other.hook_name_out!r}, which does not reach "
                f"{dictionary.hook_name!r} through the residual stream before it; give dictionaries of earlier layers."
            )
        scores.append((label, other.W_dec.float().cpu() @ reading.T))  # [latent, feature]
    out = []
    for i in range(len(features)):
        top = embed[:, i].topk(min(k, embed.shape[0]))
        entry = {
            "tokens": [(tokens[int(t)], float(v)) for t, v in zip(top.indices, top.values, strict=True)],
            "upstream": [],
            "heads": [],
        }
        for layer, scores_ov in heads:
            per_head = scores_ov[:, :, i]  # [head, token]
            best = per_head.topk(min(k, per_head.shape[1]), dim=1)
            entry["heads"] += [
                (f"L{layer}H{h}", tokens[int(t)], float(v))
                for h in range(per_head.shape[0])
                for t, v in zip(best.indices[h], best.values[h], strict=True)
            ]
        entry["heads"].sort(key=lambda item: -item[2])
        entry["heads"] = entry["heads"][:k]
        for label, weights in scores:
            best = weights[:, i].topk(min(k, weights.shape[0]))
            entry["upstream"] += [
                (label, int(g), float(v)) for g, v in zip(best.indices, best.values, strict=True)
            ]
        entry["upstream"].sort(key=lambda item: -item[2])
        entry["upstream"] = entry["upstream"][:k]
        out.append(entry)
    return out


@dataclass
class Context:
    """One top context: its tokens, the latent's activation on each, where the largest is."""

    tokens: list[str]
    values: list[float]
    max_index: int
    row: int = -1  # the corpus row it came from (-1: unknown, e.g. imported)

    @property
    def max_value(self) -> float:
        return self.values[self.max_index]


@dataclass
class FeatureCard:
    """Everything shown about one latent (module docstring); `to_dict` / `from_dict` as plain JSON."""

    dictionary: str
    feature: int
    hook_name: str | None
    hook_name_out: str | None
    kind: str
    n_tokens: int | None  # tokens measured (None: unknown, e.g. imported from Neuronpedia's layout)
    density: float
    max_act: float
    mean_act: float | None
    mean_active: float | None
    histogram_counts: list[int]
    histogram_edges: list[float]
    contexts: list[Context]
    promoted: list[tuple[str, float]] | None = None
    suppressed: list[tuple[str, float]] | None = None
    logit_counts: list[int] = field(default_factory=list)  # histogram of the logit effects over tokens
    logit_edges: list[float] = field(default_factory=list)
    input_tokens: list[tuple[str, float]] | None = None
    upstream: list[tuple[str, int, float]] | None = None
    input_heads: list[tuple[str, str, float]] | None = None  # (head, token, score) through OV circuits
    notes: list[str] = field(default_factory=list)  # what could not be read, and why

    @property
    def title(self) -> str:
        return f"{self.dictionary} #{self.feature}"

    def tokens(self) -> set[str]:
        """Every token string the card shows (contexts, promoted / suppressed, input tokens), for search."""
        found = {t for c in self.contexts for t in c.tokens}
        for pairs in (self.promoted, self.suppressed, self.input_tokens):
            found |= {t for t, _ in pairs or ()}
        found |= {t for _, t, _ in self.input_heads or ()}
        return found

    def to_dict(self) -> dict:
        out = asdict(self)
        for name in ("promoted", "suppressed", "input_tokens", "upstream", "input_heads"):
            if out[name] is not None:
                out[name] = [list(item) for item in out[name]]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> FeatureCard:
        data = dict(data)
        data["contexts"] = [Context(**c) for c in data.get("contexts", [])]
        for name in ("promoted", "suppressed", "input_tokens", "upstream", "input_heads"):
            if data.get(name) is not None:
                data[name] = [tuple(item) for item in data[name]]
        return cls(**data)


def _histogram(values: Tensor, bins: int) -> tuple[list[int], list[float]]:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        high = low + 1.0
    counts = torch.histc(values, bins=bins, min=low, max=high).long().tolist()
    return counts, torch.linspace(low, high, bins + 1).tolist()


def _contexts(model: HookedPhi, stats: FeatureStats, row: int) -> list[Context]:
    contexts = []
    for c in range(stats.context_values.shape[1]):
        if stats.context_rows[row, c] < 0:
            break
        ids = stats.context_tokens[row, c]
        inside = ids != PAD
        first = int(inside.nonzero()[0, 0])
        contexts.append(
            Context(
                tokens=str_tokens(model.tokenizer, ids[inside]),
                values=[round(v, 6) for v in stats.context_acts[row, c][inside].tolist()],
                max_index=int(stats.context_max_index[row, c]) - first,
                row=int(stats.context_rows[row, c]),
            )
        )
    return contexts


def cards_from_stats(
    model: HookedPhi,
    dictionary: Dictionary,
    stats: FeatureStats,
    features: Sequence[int] | None = None,
    *,
    label: str = "dictionary",
    n_tokens: int = 10,
    upstream: Mapping[str, Dictionary] | None = None,
    logit_bins: int = 50,
    head_layers: Sequence[int] = (0,),
) -> list[FeatureCard]:
    """Cards of `features` (default: every latent the statistics hold) from statistics already measured;
    `head_layers`: the layers whose heads' OV paths a transcoder's card lists (`input_directions`)."""
    chosen = stats.features.tolist() if features is None else [int(f) for f in features]
    rows = [stats.index_of(f) for f in chosen]
    notes: list[str] = []
    effects = ids = None
    try:
        effects = logit_effects(model, dictionary, chosen)
        ids = real_token_ids(model)
    except InputError as error:
        notes.append(f"promoted tokens: {error}")
    inputs = None
    if dictionary.kind != "sae" or upstream:
        try:
            inputs = input_directions(
                model, dictionary, chosen, upstream, k=n_tokens, head_layers=head_layers
            )
        except InputError as error:
            if upstream:
                raise
            notes.append(f"input directions: {error}")
    cards = []
    for i, (feature, row) in enumerate(zip(chosen, rows, strict=True)):
        counts, edges = stats.histogram(feature)
        card = FeatureCard(
            dictionary=label,
            feature=feature,
            hook_name=dictionary.hook_name,
            hook_name_out=dictionary.hook_name_out,
            kind=dictionary.kind,
            n_tokens=stats.n_tokens,
            density=float(stats.density[row]),
            max_act=float(stats.max_act[row]),
            mean_act=float(stats.mean_act[row]),
            mean_active=float(stats.mean_active[row]),
            histogram_counts=counts,
            histogram_edges=edges,
            contexts=_contexts(model, stats, row),
            notes=list(notes),
        )
        if effects is not None and ids is not None:
            real = effects[i, ids]
            top, bottom = real.topk(n_tokens), (-real).topk(n_tokens)
            card.promoted = list(
                zip(str_tokens(model.tokenizer, ids[top.indices]), top.values.tolist(), strict=True)
            )
            card.suppressed = list(
                zip(str_tokens(model.tokenizer, ids[bottom.indices]), (-bottom.values).tolist(), strict=True)
            )
            card.logit_counts, card.logit_edges = _histogram(real, logit_bins)
        if inputs is not None:
            card.input_tokens = inputs[i]["tokens"]
            card.upstream = inputs[i]["upstream"] if upstream else None
            card.input_heads = inputs[i]["heads"] or None
        cards.append(card)
    return cards


def feature_cards(
    model: HookedPhi,
    dictionary: Dictionary,
    tokens: Int[Tensor, "batch pos"] | Iterable,
    *,
    features: Sequence[int] | None = None,
    top_n: int | None = None,
    by: str = "density",
    label: str = "dictionary",
    n_contexts: int = 10,
    n_tokens: int = 10,
    context_before: int = 16,
    context_after: int = 4,
    upstream: Mapping[str, Dictionary] | None = None,
    model_batch: int = 32,
    bins: int = 50,
    head_layers: Sequence[int] = (0,),
) -> list[FeatureCard]:
    """Cards of chosen latents over a corpus, from one streaming pass (`feature_stats`).

    `features`: the latents (default: every latent, each measured); `top_n`: of those, the `top_n`
    ranked `by` density, max_act or mean_act (the pass measures every latent to rank them).
    `tokens`: as `feature_stats` takes them. `upstream`: earlier dictionaries by label, for a
    transcoder's virtual weights. `head_layers`: the layers whose heads' OV paths from the token
    embeddings a transcoder's card lists (those writing before it reads; checked first).
    """
    n_layers = model.cfg.n_layers
    bad = [h for h in head_layers if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h < n_layers]
    if isinstance(head_layers, int | str) or bad:
        raise InputError(
            f"head_layers={head_layers!r} is not allowed; use a list of layers of the model (0..{n_layers - 1})."
        )
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise InputError(f"top_n={top_n!r} is not allowed; it must be a positive integer (or None).")
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens < 1:
        raise InputError(f"n_tokens={n_tokens!r} is not allowed; it must be a positive integer.")
    stats = feature_stats(
        model, dictionary, tokens, features=features, n_contexts=n_contexts, bins=bins,
        context_before=context_before, context_after=context_after, model_batch=model_batch,
    )  # fmt: skip
    chosen = stats.top(by, top_n) if top_n is not None else stats.features.tolist()
    return cards_from_stats(
        model, dictionary, stats, chosen, label=label, n_tokens=n_tokens, upstream=upstream,
        head_layers=head_layers,
    )  # fmt: skip
