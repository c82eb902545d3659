"""Direct logit attribution (DLA) and the logit lens.

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

DLA measures only what a component writes *directly* into the answer direction. A head that acts
through later heads or MLPs (an S-inhibition head in IOI, a previous-token head feeding an
induction head) can have a small DLA and a large total effect; compare with ablation or patching.
"""

from __future__ import annotations

from dataclasses import dataclass

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.cache import cache_activations
from interp.forward import PhiWeights
from interp.prompts import PromptPairs


@dataclass
class DirectLogitAttribution:
    """Per-prompt direct attributions to logit(answer) - logit(wrong) at each final position."""

    heads: Float[Tensor, "layer head batch"]
    attn_bias: Float[Tensor, "layer batch"]
    mlp: Float[Tensor, "layer batch"]
    embed: Float[Tensor, " batch"]
    ln_bias: Float[Tensor, " batch"]  # constant: final LayerNorm bias . u
    unembed_bias: Float[Tensor, " batch"]  # constant: b_U[answer] - b_U[wrong]
    logit_diff: Float[Tensor, " batch"]  # the model's actual logit difference

    @property
    def attn(self) -> Float[Tensor, "layer batch"]:
        """Whole attention layers: the heads plus the output bias."""
        return self.heads.sum(1) + self.attn_bias

    def total(self) -> Float[Tensor, " batch"]:
        """Every component plus both constants: equals `logit_diff`."""
        return self.attn.sum(0) + self.mlp.sum(0) + self.embed + self.ln_bias + self.unembed_bias

    def _repr_html_(self) -> str:
        from interp.viz.summary import dla_html

        return dla_html(self)


def _final(t: Tensor, final_pos: Tensor) -> Tensor:
    return t[torch.arange(t.shape[0], device=t.device), final_pos.to(t.device)]


def _direction(w: PhiWeights, answer: Tensor, wrong: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(w_ln * u  [batch d_model], b_ln . u [batch], delta b_U [batch]) for each prompt."""
    u = (w.W_U[answer] - w.W_U[wrong]).float()
    scaled = u * w.ln_f_w.float()
    ln_bias = u @ w.ln_f_b.float()
    unembed_bias = (w.b_U[answer] - w.b_U[wrong]).float() if w.b_U is not None else torch.zeros(len(answer))
    return scaled, ln_bias, unembed_bias


def _centre(x: Tensor) -> Tensor:
    return x - x.mean(-1, keepdim=True)


@torch.no_grad()
def direct_logit_attribution(model, pairs: PromptPairs, which: str = "clean") -> DirectLogitAttribution:
    """DLA of every head, attention bias, MLP and the embedding, from one cached forward pass."""
    w = PhiWeights.from_model(model)
    tokens = (pairs.clean_tokens if which == "clean" else pairs.corrupted_tokens).to(model.cfg.device)
    L = w.n_layers
    names = ["hook_embed", "ln_final.hook_scale"]
    names += [f"blocks.{layer}.attn.hook_z" for layer in range(L)]
    names += [f"blocks.{layer}.hook_mlp_out" for layer in range(L)]
    cache = cache_activations(model, tokens, names)
    final_pos = pairs.final_pos
    answer, wrong = pairs.answer.to(tokens.device), pairs.wrong.to(tokens.device)
    direction, ln_bias, unembed_bias = _direction(w, answer, wrong)
    scale = _final(cache["ln_final.hook_scale"], final_pos).float()  # [batch, 1]

    def attribute(component: Float[Tensor, "... batch d_model"]) -> Float[Tensor, "... batch"]:
        return einops.einsum(_centre(component.float()) / scale, direction, "... b m, b m -> ... b")

    heads, mlp_out = [], []
    for layer in range(L):
        z = _final(cache[f"blocks.{layer}.attn.hook_z"], final_pos).float()  # batch head d_head
        writes = einops.einsum(z, w.W_O[layer].float(), "b h d, h d m -> h b m")
        heads.append(attribute(writes))
        mlp_out.append(attribute(_final(cache[f"blocks.{layer}.hook_mlp_out"], final_pos)))
    attn_bias = torch.stack([attribute(w.b_O[layer].float().expand(len(pairs), -1)) for layer in range(L)])
    embed = attribute(_final(cache["hook_embed"], final_pos))
    logits = model(tokens)
    final_logits = _final(logits, final_pos).float()
    rows = torch.arange(len(pairs), device=final_logits.device)
    logit_diff = final_logits[rows, answer] - final_logits[rows, wrong]
    return DirectLogitAttribution(
        heads=torch.stack(heads).cpu(),
        attn_bias=attn_bias.cpu(),
        mlp=torch.stack(mlp_out).cpu(),
        embed=embed.cpu(),
        ln_bias=ln_bias.cpu(),
        unembed_bias=unembed_bias.cpu(),
        logit_diff=logit_diff.cpu(),
    )


@torch.no_grad()
def neuron_attribution(
    model, pairs: PromptPairs, layer: int, k: int = 10
) -> tuple[Float[Tensor, " d_mlp"], list[tuple[int, float]]]:
    """Mean DLA of every neuron of one MLP (its `hook_post` times its `W_out` column), and the top k."""
    w = PhiWeights.from_model(model)
    tokens = pairs.clean_tokens.to(model.cfg.device)
    cache = cache_activations(model, tokens, [f"blocks.{layer}.mlp.hook_post", "ln_final.hook_scale"])
    post = _final(cache[f"blocks.{layer}.mlp.hook_post"], pairs.final_pos).float()  # batch d_mlp
    scale = _final(cache["ln_final.hook_scale"], pairs.final_pos).float()
    direction, _, _ = _direction(w, pairs.answer.to(tokens.device), pairs.wrong.to(tokens.device))
    W_out = _centre(w.W_out[layer].float().T)  # d_mlp d_model, each neuron's write centred
    per_neuron = einops.einsum(post / scale, W_out, direction, "b n, n m, b m -> n b").mean(-1).cpu()
    values, index = per_neuron.abs().topk(min(k, per_neuron.numel()))
    return per_neuron, [(int(i), float(per_neuron[i])) for i in index]


@dataclass
class LogitLens:
    """The residual stream after the embedding and after each block, decoded at the final position."""

    answer_rank: Int[Tensor, "layer batch"]  # 0 = the answer is the top token
    answer_prob: Float[Tensor, "layer batch"]
    logit_diff: Float[Tensor, "layer batch"]
    top_tokens: list[list[list[tuple[str, float]]]]  # [layer][prompt] -> k (token, prob)
    labels: list[str]  # "embed", "after L0", ...

    def _repr_html_(self) -> str:
        from interp.viz.summary import logit_lens_html

        return logit_lens_html(self)


@torch.no_grad()
def logit_lens(model, pairs: PromptPairs, k: int = 5) -> LogitLens:
    """Decode the accumulated residual stream through the final LayerNorm and unembedding."""
    w = PhiWeights.from_model(model)
    tokens = pairs.clean_tokens.to(model.cfg.device)
    L = w.n_layers
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{layer}.hook_resid_post" for layer in range(L)]
    cache = cache_activations(model, tokens, names)
    rows = torch.arange(len(pairs))
    answer, wrong = pairs.answer, pairs.wrong
    n_real = min(len(model.tokenizer), w.W_U.shape[0])
    ranks, probs, diffs, tops = [], [], [], []
    for name in names:
        resid = _final(cache[name], pairs.final_pos)
        logits = (
            torch.nn.functional.linear(
                torch.nn.functional.layer_norm(resid, (resid.shape[-1],), w.ln_f_w, w.ln_f_b, w.eps),
                w.W_U,
                w.b_U,
            )
            .float()
            .cpu()
        )
        log_probs = logits.log_softmax(-1)
        answer_logit = logits[rows, answer]
        ranks.append((logits > answer_logit[:, None]).sum(-1))
        probs.append(log_probs[rows, answer].exp())
        diffs.append(answer_logit - logits[rows, wrong])
        top_p, top_i = log_probs[:, :n_real].exp().topk(k)
        tops.append(
            [
                [(model.tokenizer.decode([int(i)]), float(p)) for p, i in zip(ps, ids, strict=True)]
                for ps, ids in zip(top_p, top_i, strict=True)
            ]
        )
    return LogitLens(
        answer_rank=torch.stack(ranks),
        answer_prob=torch.stack(probs),
        logit_diff=torch.stack(diffs),
        top_tokens=tops,
        labels=["embed"] + [f"after L{layer}" for layer in range(L)],
    )
