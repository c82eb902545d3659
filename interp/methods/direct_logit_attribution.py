"""Direct logit attribution (DLA): what each component writes straight into the logit difference.

The final residual stream at a prompt's last position is a sum of what every component wrote:
the token embedding, each head's output (`z @ W_O`), each layer's attention output bias, each
MLP's output. The logit difference between the answer and the wrong answer is

    LN_final(x) . u + b_U[answer] - b_U[wrong],   u = W_U[answer] - W_U[wrong]
  = sum over components c of  (c - mean(c)) / scale . (w_ln * u)  +  b_ln . u  +  delta b_U

where `scale` is the final LayerNorm's cached scale for that prompt and position and `w_ln`, `b_ln`
its weight and bias. So each component gets a *direct* attribution, and two constant terms (the
final LayerNorm's bias and the unembedding bias) complete the sum exactly: components plus constants
equal the logit difference. With `weights="folded"` the LayerNorm's weight is already in `W_U`, its
bias is 0 and the writing weights are centred, so the same numbers come out (up to how the
unembedding's mean over the vocabulary was removed, which cancels in a difference of two logits).

Per-prompt values put the batch first (`[batch layer head]`, `[batch layer]`), as TransformerLens's
caches do: `dla.heads.mean(0)` is the mean over prompts per head.

DLA measures only what a component writes *directly* into the answer direction. A head that acts
through later heads or MLPs (an S-inhibition head in IOI, a previous-token head feeding an
induction head) can have a small DLA and a large total effect; compare with ablation or patching.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Literal

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.base.html import html_table
from interp.data.prompts import PromptPairs
from interp.engine.forward import PhiWeights
from interp.methods.contrastive import check_inputs
from interp.methods.result import component_name, top_coords
from interp.model.cache import cache_activations
from interp.model.loading import HookedPhi


@dataclass
class DirectLogitAttribution:
    """Per-prompt direct attributions to logit(answer) - logit(wrong) at each final position."""

    heads: Float[Tensor, "batch layer head"]
    attn_bias: Float[Tensor, "batch layer"]
    mlp: Float[Tensor, "batch layer"]
    embed: Float[Tensor, " batch"]
    ln_bias: Float[Tensor, " batch"]  # constant: final LayerNorm bias . u
    unembed_bias: Float[Tensor, " batch"]  # constant: b_U[answer] - b_U[wrong]
    logit_diff: Float[Tensor, " batch"]  # the model's actual logit difference

    @property
    def attn(self) -> Float[Tensor, "batch layer"]:
        """Whole attention layers: the heads plus the output bias."""
        return self.heads.sum(-1) + self.attn_bias

    def total(self) -> Float[Tensor, " batch"]:
        """Every component plus both constants: equals `logit_diff`."""
        return self.attn.sum(-1) + self.mlp.sum(-1) + self.embed + self.ln_bias + self.unembed_bias

    def _repr_html_(self) -> str:
        heads = self.heads.mean(0)
        rows = [
            [component_name(("layer", "head"), coords), f"{value:+.4f}"]
            for coords, value in top_coords(heads, 5)
        ]
        facts = (
            f"logit difference {self.logit_diff.mean():.4f} (mean over {self.logit_diff.numel()} prompts); "
            f"max |components + constants - logit diff| {(self.total() - self.logit_diff).abs().max():.1e}"
        )
        table = html_table(["head", "mean DLA"], rows)
        return f"<div><b>direct logit attribution</b><br>{html.escape(facts)}{table}</div>"


def _direction(
    w: PhiWeights, answer: Int[Tensor, " batch"], wrong: Int[Tensor, " batch"]
) -> tuple[Float[Tensor, "batch d_model"], Float[Tensor, " batch"], Float[Tensor, " batch"]]:
    """(w_ln * u  [batch d_model], b_ln . u [batch], delta b_U [batch]) for each prompt."""
    u = (w.W_U[answer] - w.W_U[wrong]).float()
    scaled = u * w.ln_f_w.float()
    ln_bias = u @ w.ln_f_b.float()
    unembed_bias = (w.b_U[answer] - w.b_U[wrong]).float() if w.b_U is not None else torch.zeros(len(answer))
    return scaled, ln_bias, unembed_bias


def _centre(x: Float[Tensor, " ..."]) -> Float[Tensor, " ..."]:
    return x - x.mean(-1, keepdim=True)


@torch.no_grad()
def direct_logit_attribution(
    model: HookedPhi, pairs: PromptPairs, which: Literal["clean", "corrupted"] = "clean"
) -> DirectLogitAttribution:
    """DLA of every head, attention bias, MLP and the embedding, from one cached forward pass."""
    if which not in ("clean", "corrupted"):
        raise InputError(f"which={which!r} is not allowed; use 'clean' or 'corrupted'.")
    check_inputs(model, pairs, "direct logit attribution")
    w = PhiWeights.from_model(model)
    tokens = (pairs.clean_tokens if which == "clean" else pairs.corrupted_tokens).to(model.cfg.device)
    L = w.n_layers
    names = ["hook_embed", "ln_final.hook_scale"]
    names += [f"blocks.{layer}.attn.hook_z" for layer in range(L)]
    names += [f"blocks.{layer}.hook_mlp_out" for layer in range(L)]
    cache = cache_activations(model, tokens, names)
    answer, wrong = pairs.answer.to(tokens.device), pairs.wrong.to(tokens.device)
    direction, ln_bias, unembed_bias = _direction(w, answer, wrong)
    scale = pairs.at_final(cache["ln_final.hook_scale"]).float()  # [batch, 1]

    def attribute(component: Float[Tensor, "batch ... d_model"]) -> Float[Tensor, "batch ..."]:
        per_prompt = scale.reshape(-1, *[1] * (component.dim() - 1))  # [batch, 1, ..., 1]
        return einops.einsum(_centre(component.float()) / per_prompt, direction, "b ... m, b m -> b ...")

    heads, mlp_out = [], []
    for layer in range(L):
        z = pairs.at_final(cache[f"blocks.{layer}.attn.hook_z"]).float()  # batch head d_head
        writes = einops.einsum(z, w.W_O[layer].float(), "b h d, h d m -> b h m")
        heads.append(attribute(writes))
        mlp_out.append(attribute(pairs.at_final(cache[f"blocks.{layer}.hook_mlp_out"])))
    b_O = einops.repeat(torch.stack(w.b_O).float(), "layer d_model -> batch layer d_model", batch=len(pairs))
    attn_bias = attribute(b_O)
    embed = attribute(pairs.at_final(cache["hook_embed"]))
    logits = model(tokens)
    final_logits = pairs.at_final(logits).float()
    rows = torch.arange(len(pairs), device=final_logits.device)
    logit_diff = final_logits[rows, answer] - final_logits[rows, wrong]
    return DirectLogitAttribution(
        heads=torch.stack(heads, dim=1).cpu(),
        attn_bias=attn_bias.cpu(),
        mlp=torch.stack(mlp_out, dim=1).cpu(),
        embed=embed.cpu(),
        ln_bias=ln_bias.cpu(),
        unembed_bias=unembed_bias.cpu(),
        logit_diff=logit_diff.cpu(),
    )


@torch.no_grad()
def neuron_attribution(
    model: HookedPhi, pairs: PromptPairs, layer: int, k: int = 10
) -> tuple[Float[Tensor, " d_mlp"], list[tuple[int, float]]]:
    """Mean DLA of every neuron of one MLP (its `hook_post` times its `W_out` column), and the top k."""
    check_inputs(model, pairs, "neuron attribution")
    if not 0 <= layer < model.cfg.n_layers:
        raise InputError(f"layer {layer} is not a layer of this model (0..{model.cfg.n_layers - 1})")
    w = PhiWeights.from_model(model)
    tokens = pairs.clean_tokens.to(model.cfg.device)
    cache = cache_activations(model, tokens, [f"blocks.{layer}.mlp.hook_post", "ln_final.hook_scale"])
    post = pairs.at_final(cache[f"blocks.{layer}.mlp.hook_post"]).float()  # batch d_mlp
    scale = pairs.at_final(cache["ln_final.hook_scale"]).float()
    direction, _, _ = _direction(w, pairs.answer.to(tokens.device), pairs.wrong.to(tokens.device))
    W_out = _centre(w.W_out[layer].float().T)  # d_mlp d_model, each neuron's write centred
    per_neuron = (
        einops.einsum(
            post / scale, W_out, direction, "batch d_mlp, d_mlp d_model, batch d_model -> d_mlp batch"
        )
        .mean(-1)
        .cpu()
    )
    values, index = per_neuron.abs().topk(min(k, per_neuron.numel()))
    return per_neuron, [(int(i), float(per_neuron[i])) for i in index]
