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
# # Activation patching on IOI: residual stream, heads, paths
#
# Clean prompts make the model say the indirect object; corrupted prompts repeat the other name.
# Denoising patches clean activations into the corrupted run: 1 = clean behaviour restored.

# %% tags=["parameters"]
MODEL = "toy"  # or "microsoft/phi-2"
N_PAIRS = 16

# %%
import interp
from interp.data.tokens import str_tokens
from interp.data.tasks.options import TaskConfig
from interp.methods.path_patching import path_patch
from interp.data.tasks import build_pairs
from interp.viz.heatmaps import layer_head_heatmap, layer_pos_heatmap

model = interp.load_model(MODEL)
pairs = build_pairs(TaskConfig(name="ioi", n_pairs=N_PAIRS), model, seed=0)
one_length = pairs.select(max(pairs.length_groups(), key=len))  # position sweeps need one token length
tokens = str_tokens(model.tokenizer, one_length.clean_tokens[0])
len(pairs), len(one_length)

# %%
resid = interp.sweep(model, one_length, "resid_pre")
layer_pos_heatmap(resid.normalised(), tokens, "resid_pre patching (normalised)")

# %%
heads = interp.sweep(model, pairs, "head_out")
layer_head_heatmap(heads.normalised(), "head output patching (normalised)")

# %%
interp.top_heads(heads.normalised(), 3)

# %% [markdown]
# Path patching (noising, as in Wang et al.): each head as the sender, to the logits directly.

# %%
paths = path_patch(model, pairs, "logits")
layer_head_heatmap(paths.normalised(), "path patching to the logits (normalised)")
