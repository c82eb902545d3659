"""Dimension names used in every shape annotation of `interp`, defined once.

They are TransformerLens's names, so a shape reads the same here as in its docs:

- `batch`: prompts in a batch.  `pos`: token positions (`dest_pos` / `src_pos` in attention).
- `layer`: transformer blocks, 0 = closest to the embedding.  `head`: attention heads of a layer.
- `d_model`: the residual stream.  `d_head`: one head's query/key/value/z width.
- `d_mlp`: MLP hidden neurons.  `d_vocab`: the unembedding's width. For Phi-2 this is 51200,
  larger than the tokenizer's ~50295 real tokens; the extra logits belong to no token.

Phi specifics that change what these mean: attention and MLP of a block read the *same*
LayerNorm output and write to the residual stream in parallel, so there is no `resid_mid`;
rotary embeddings cover only the first `rotary_dim` of each head's `d_head` dims.
"""

from __future__ import annotations

from jaxtyping import Float, Int
from torch import Tensor

Tokens = Int[Tensor, "batch pos"]
Logits = Float[Tensor, "batch pos d_vocab"]
Residual = Float[Tensor, "batch pos d_model"]
HeadResults = Float[Tensor, "batch pos head d_model"]
Pattern = Float[Tensor, "batch head dest_pos src_pos"]
LayerHead = Float[Tensor, "layer head"]

__all__ = ["Tokens", "Logits", "Residual", "HeadResults", "Pattern", "LayerHead", "Float", "Int", "Tensor"]
