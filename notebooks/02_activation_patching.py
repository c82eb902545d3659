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
# **Task.** Clean prompts ("When Mary and John went to the store, John gave a drink to") make the
# model say the indirect object (" Mary"); corrupted prompts change the names so that the same
# continuation is wrong. The metric is logit(answer) − logit(wrong).
#
# **Patching** copies one activation from one run into the other and measures the metric:
# - *denoising* (the default of `interp.sweep`): clean activation into the corrupted run. An
#   activation that carries the behaviour moves the metric towards the clean value.
# - *noising* (path patching, as in Wang et al.): corrupted activation into the clean run. An
#   activation the behaviour needs moves the metric towards the corrupted value.
#
# Every figure here plots the **effect**: the metric's change from the run that was patched, as a
# fraction of the clean − corrupted gap. 0 (white) is no effect; +1 restores the clean behaviour
# fully (denoising); −1 destroys it fully (noising). Red is positive, blue negative.

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
one_length = pairs.select(max(pairs.length_groups(), key=len))  # a position sweep needs one token length
tokens = str_tokens(model.tokenizer, one_length.clean_tokens[0])
print(f"{len(pairs)} prompt pairs; the position sweep uses the {len(one_length)} of one token length ({len(tokens)} tokens)")

# %% [markdown]
# **Residual stream by layer and position** (denoising). Read each row left to right: where in the
# prompt does the information that decides the answer sit at that depth? On the toy it sits at the
# repeated name (the second " Frank") in layers 0 and 1, and at the token after it in layers 2 and 3,
# where the previous-token head L1H0 copied it; it reaches the final token only through the name
# mover's output in layer 3, which no `resid_pre` row shows. On Phi-2, look for the layer where it
# moves to the final token.

# %%
resid = interp.sweep(model, one_length, "resid_pre")
if MODEL == "toy":  # the claim above, checked
    clean = one_length.clean_tokens[0].tolist()
    s2 = max(i for i in range(int(one_length.final_pos[0])) if clean[i] == int(one_length.wrong[0]))
    assert resid.effect().argmax(-1).tolist() == [s2, s2, s2 + 1, s2 + 1]
layer_pos_heatmap(resid.effect(), tokens, "resid_pre, denoising: effect (+1 = clean restored, 0 = none)")

# %% [markdown]
# **Each head's output at every position** (denoising). A few cells should stand out: the heads that
# move the name to the answer position.

# %%
heads = interp.sweep(model, pairs, "head_out")
layer_head_heatmap(heads.effect(), "head output, denoising: effect (+1 = clean restored, 0 = none)")

# %%
heads.top(3)  # ranked by |effect|, the same ranking as the report's tables

# %% [markdown]
# **Path patching to the logits** (noising): only each head's *direct* path to the logits carries the
# corrupted value. A head that writes the answer directly (a name mover) shows a large negative effect;
# white means the head matters, if at all, through other heads.

# %%
paths = path_patch(model, pairs, "logits")
layer_head_heatmap(paths.effect(), "path patching to the logits, noising: effect (−1 = behaviour gone, 0 = none)")

# %%
if MODEL == "toy":  # the reading below, checked
    assert paths.top(1)[0][0] == "L3H2" and paths.top(1)[0][2] < -0.9  # the largest direct effect
    assert {name for name, *_ in heads.top(2)} == {"L1H0", "L3H2"}  # the two heads that carry it in total
    assert abs(paths.effect()[1, 0]) < 0.05  # L1H0 writes (almost) nothing to the logits directly
paths.top(3)

# %% [markdown]
# **What the toy shows**: L3H2 is the name mover (largest direct effect) and L1H0 moves name
# information earlier, with as large a total effect and almost no direct one (see `05_circuit_discovery` for the edge between them). **On Phi-2**: set
# `MODEL = "microsoft/phi-2"` and compare the head sweep with the path patching: heads with a large
# total but a small direct effect work through later heads.
