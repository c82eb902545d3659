"""The dimension names every shape annotation in `interp` uses, defined once (a test holds every
jaxtyping string in the package to this glossary).

They are TransformerLens's names, so a shape reads the same here as in its docs. Phi specifics that
change what they mean: attention and MLP of a block read the *same* LayerNorm output and write to
the residual stream in parallel, so there is no `resid_mid`; rotary embeddings cover only the first
`rotary_dim` of each head's `d_head` dims (32 of 80 in Phi-2); `d_vocab` (51200 for Phi-2) is larger
than the tokenizer's ~50295 real tokens, and the extra logits belong to no token.

A leading `_` (jaxtyping: a size not held equal across the annotation, e.g. `"_batch _pos"` in a list
of token tensors of several lengths) keeps the name's meaning.
"""

from __future__ import annotations

from jaxtyping import Float, Int
from torch import Tensor

DIMS: dict[str, str] = {
    "batch": "prompts in a batch (or a dataset's prompts, in dataset order)",
    "pos": "token positions",
    "dest_pos": "attention: the position a head writes to (the query's position)",
    "src_pos": "attention: the position a head reads from (the key's position)",
    "layer": "transformer blocks, 0 = closest to the embedding",
    "head": "attention heads of a layer",
    "d_model": "the residual stream's width",
    "d_head": "one head's query / key / value / z width",
    "d_mlp": "MLP hidden neurons",
    "d_vocab": "the unembedding's width (token ids)",
    "qkv": "queries, keys and values of every head stacked: 3 * head * d_head",
    "component": "components: named parts of a layer (attn, mlp), or heads / rows of a figure, one per entry",
    "n_tokens": "a list of token ids (e.g. the tokenizer's ordinary tokens)",
    "sender": "nodes of a circuit graph that write to the residual stream (input, heads, MLPs)",
    "receiver": "inputs of a circuit graph that read it (each head's q, k, v; each MLP; the logits)",
    "edge": "edges of a circuit graph (sender -> receiver input)",
    "multiplier": "steering: the multipliers a vector is added with",
    "sample": "generation: the prompts continued as text samples",
    "dims": "the axes of a result, whatever they are (layer head, layer pos, ...)",
    "d_sae": "a dictionary's latents (SAE / transcoder features)",
    "d_in": "the width of the hook point a dictionary reads",
    "d_out": "the width of the hook point a transcoder writes (= d_in for an SAE)",
    "token": "token positions flattened over prompts (one activation vector each)",
    "bin": "histogram bins",
    "feature": "chosen latents of a dictionary (a subset of d_sae, in the order asked for)",
    "context": "a latent's top-activating contexts over a corpus, largest first",
    "window": "the tokens of one context around its largest activation",
    "node": "graph nodes: an attribution graph's (active features, error nodes, token embeddings, logits, in that order) or a feature circuit's (the input, then per site its latents and error node)",
    "active": "the active (layer, pos, feature) entries of a prompt's transcoders (an attribution graph's features)",
    "logit": "the output logits an attribution graph explains (its top tokens by probability)",
    "k": "a TopK dictionary's chosen latents of one token (k of d_sae)",
    "source": "a feature circuit's edge sources: the input, the kept nodes and every error node (node order)",
    "target": "a feature circuit's edge targets: the kept nodes, then the metric",
    "hook": "hook points a result covers, in the order asked for (e.g. one probe each)",
    "point": "the points a curve is drawn at (hook points, probe sizes), in order",
    "measure": "measures of one result side by side (e.g. a probe's accuracy, then its controls)",
    "n_classes": "a probe's classes: the label values 0..n_classes-1",
    "d_probe": "a probe's input: one hook's activation at one position, flattened",
    "rank": "a subspace's basis directions (DAS and interchange interventions)",
    "sparsity": "a sparse probe's sizes: how many units it reads, in increasing order",
    "sender_set": "path patching: the sets of sender heads, each patched in its own run",
    "variant": "batched patching: the patched runs computed side by side, one per variant",
}

Tokens = Int[Tensor, "batch pos"]
Logits = Float[Tensor, "batch pos d_vocab"]
Residual = Float[Tensor, "batch pos d_model"]
HeadResults = Float[Tensor, "batch pos head d_model"]
Pattern = Float[Tensor, "batch head dest_pos src_pos"]
LayerHead = Float[Tensor, "layer head"]

__all__ = ["DIMS", "Tokens", "Logits", "Residual", "HeadResults", "Pattern", "LayerHead"]
