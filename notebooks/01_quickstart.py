# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Quickstart: load a model, run with a cache, look at attention
#
# The first cell holds the parameters: CI runs this notebook on the embedded toy model; switch
# `MODEL` to `"microsoft/phi-2"` (a ~5.6 GB download, GPU advised) to run it on Phi-2.

# %% tags=["parameters"]
MODEL = "toy"  # or "microsoft/phi-2"
PROMPT = "When Mary and John went to the store, John gave a drink to"

# %%
import interp
from interp.data.tokens import str_tokens
from interp.viz.attention import attention_patterns

model = interp.load_model(MODEL)
model.interp_info

# %% [markdown]
# `run_with_cache` is TransformerLens's: every hook's activation, by name. Phi runs attention and MLP in
# parallel, so there is no `resid_mid`; `interp.hook_names(model)` lists them all.

# %%
logits, cache = model.run_with_cache(PROMPT)
top = logits[0, -1].detach().softmax(-1).topk(5)
list(zip(str_tokens(model.tokenizer, top.indices), top.values.tolist(), strict=True))

# %%
assert not [name for name in interp.hook_names(model) if "resid_mid" in name]  # parallel blocks
{name: tuple(cache[name].shape) for name in ["blocks.0.hook_resid_pre", "blocks.1.attn.hook_pattern", "blocks.1.attn.hook_z"]}

# %% [markdown]
# Attention patterns of every head in layer 1 (offline circuitsvis; hover a head to enlarge it).

# %%
attention_patterns(model, PROMPT, layer=1)
