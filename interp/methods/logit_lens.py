"""The logit lens: the residual stream after each layer, read through the final LayerNorm and unembedding.

After the embedding and after every block, the final-position residual stream is decoded as if it
were the last one (nostalgebraist 2020): where the answer's rank drops, its probability rises and
the logit difference grows is where the model has written the answer. Phi's parallel blocks
(attention and MLP read the same input) mean there is one point per block, after both: there is
no `resid_mid` between them. The final LayerNorm uses each reading's own scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.base.html import html_table
from interp.data.prompts import PromptPairs
from interp.data.tokens import str_tokens
from interp.engine.forward import PhiWeights
from interp.methods.contrastive import check_inputs
from interp.model.cache import cache_activations
from interp.model.loading import HookedPhi


@dataclass
class LogitLens:
    """The residual stream after the embedding and after each block, decoded at the final position."""

    answer_rank: Int[Tensor, "layer batch"]  # 0 = the answer is the top token
    answer_prob: Float[Tensor, "layer batch"]
    logit_diff: Float[Tensor, "layer batch"]
    top_tokens: list[list[list[tuple[str, float]]]]  # [layer][prompt] -> k (token, prob)
    labels: list[str]  # "embed", "after L0", ...

    def _repr_html_(self) -> str:
        rows = [
            [label, f"{rank.float().mean():.1f}", f"{prob.mean():.3f}", f"{diff.mean():+.3f}"]
            for label, rank, prob, diff in zip(
                self.labels, self.answer_rank, self.answer_prob, self.logit_diff, strict=True
            )
        ]
        table = html_table(["after", "answer rank", "answer prob", "logit diff"], rows)
        return f"<div><b>logit lens</b>{table}</div>"


@torch.no_grad()
def logit_lens(model: HookedPhi, pairs: PromptPairs, k: int = 5) -> LogitLens:
    """Decode the accumulated residual stream through the final LayerNorm and unembedding."""
    check_inputs(model, pairs, "the logit lens")
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
        resid = pairs.at_final(cache[name])
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
                list(zip(str_tokens(model.tokenizer, ids), ps.tolist(), strict=True))
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
