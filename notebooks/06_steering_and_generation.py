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
# # Steering and generation: see the text change
#
# `interp.generate` lets the model write while an intervention is applied: a head ablated, or a
# steering vector added to the residual stream. It keeps a key/value cache, so each new token costs one
# position; interventions act on the prompt's positions, the generated ones, or both.
#
# A **steering vector** here is the mean, over prompt pairs, of the clean minus corrupted residual
# stream at the final token (contrastive activation addition; with one pair it is ActAdd). Added to
# the corrupted prompts with a multiplier, it should move the model towards the clean answer.

# %% tags=["parameters"]
MODEL = "toy"  # or "microsoft/phi-2" (GPU advised)
PROMPT = "When Mary and John went to the store, John gave a drink to"

# %%
import torch

import interp
from interp.data.tasks import build_pairs
from interp.data.tasks.options import TaskConfig

model = interp.load_model(MODEL)
interp.generate(model, [PROMPT, "The cat"], 8)

# %% [markdown]
# **Ablating a head while generating.** On the toy, L3H2 is the name mover: without it the logit
# difference between the indirect object (" Mary") and the subject (" John") at the first new token
# falls from about +12.7 to about +2.9, yet " Mary" stays the top token (other heads carry the rest, see
# `03_head_attribution`); what changes is the rest of the text.

# %%
mary, john = (model.tokenizer(f" {name}", add_special_tokens=False)["input_ids"][0] for name in ("Mary", "John"))
plain = interp.generate(model, PROMPT, 8, return_logits=True)
ablated = interp.generate(model, PROMPT, 8, interventions=[interp.AblateHeads([(3, 2)])], return_logits=True)


def first_logit_diff(generation):
    first = generation.step_logits[0][0]  # the logits that chose the first new token
    return float(first[mary] - first[john])


print(f"logit diff {first_logit_diff(plain):+.2f} -> {first_logit_diff(ablated):+.2f}")
if MODEL == "toy":  # the claim above, checked
    assert (round(first_logit_diff(plain), 1), round(first_logit_diff(ablated), 1)) == (12.7, 2.9)
    assert plain.texts[0].startswith(" Mary") and ablated.texts[0].startswith(" Mary")
    assert plain.texts[0] != ablated.texts[0]
plain.texts + ablated.texts

# %% [markdown]
# **Any hook point, and patches from another run.** `Hook(name, fn)` takes a TransformerLens hook
# name and a function `fn(activation, site)`; `Patch(name, source)` puts in an activation cached
# from another prompt. Here the name mover's output at the prompt's positions comes from a prompt where
# the other name was repeated, so it now points at the other name. `keep` returns activations of the
# generated tokens as they were computed, interventions included: below, where the name mover attends
# while the model writes.

# %%
from interp.data.tokens import str_tokens
from interp.viz.attention import AttentionPatterns

CORRUPTED = PROMPT.replace("store, John", "store, Mary")
corrupted_tokens = model.tokenizer(CORRUPTED, add_special_tokens=False, return_tensors="pt")["input_ids"]
_, cache = model.run_with_cache(corrupted_tokens)
patched = interp.generate(
    model, PROMPT, 6,
    interventions=[interp.Patch("blocks.3.attn.hook_z", cache["blocks.3.attn.hook_z"], "prompt", heads=[2])],
    keep=["blocks.3.attn.hook_pattern"],
)  # fmt: skip
print("plain:  ", interp.generate(model, PROMPT, 6).texts[0])
print("patched:", patched.texts[0])
if MODEL == "toy":  # "it now points at the other name"
    assert patched.texts[0].startswith(" John")
AttentionPatterns(
    patched.activations["blocks.3.attn.hook_pattern"][0],
    str_tokens(model.tokenizer, patched.tokens[0]),
    [f"L3H{h}" for h in range(model.cfg.n_heads)],
)

# %% [markdown]
# **A steering vector from IOI pairs.** Pairs whose answer is " Mary" (names Mary and John only): the
# vector points from "answer John" to "answer Mary". The sweep adds it at each layer (the last row is
# the final residual, just before the unembedding) with each multiplier to the corrupted prompts, and
# reports the logit difference (positive = the model now prefers the clean answer) and the KL from the
# unsteered run.

# %%
pairs = build_pairs(TaskConfig(name="ioi", n_pairs=64, names=["Mary", "John"]), model, seed=0)
mary = model.tokenizer(" Mary", add_special_tokens=False)["input_ids"][0]
pairs = pairs.select(torch.nonzero(pairs.answer == mary).flatten())
sweep = interp.steer_sweep(model, pairs, list(range(model.cfg.n_layers + 1)), [0.5, 1.0, 2.0, 4.0], n_samples=1, max_new_tokens=5)
sweep

# %%
from interp.viz.heatmaps import layer_pos_heatmap

layer_pos_heatmap(
    sweep.scores, [f"x{m:g}" for m in sweep.multipliers],
    f"steered logit difference (unsteered {sweep.unsteered:+.1f}, clean {sweep.clean:+.1f}): > 0 = flipped",
    row_labels=[f"L{layer}" for layer in sweep.layers],
)

# %% [markdown]
# What the toy shows: added at every position of a middle layer, the averaged vector does not flip the
# answer; at the final residual a multiplier of 1 does. The samples show the text it then writes:

# %%
if MODEL == "toy":  # the claim above, checked (scores > 0: the clean answer preferred)
    assert (sweep.scores[1:-1] < 0).all() and sweep.scores[-1, sweep.multipliers.index(1.0)] > 0

[(s["layer"], s["multiplier"], s["text"]) for s in sweep.samples]

# %% [markdown]
# **Where does the model already read the vector?** Each token's residual stream projected on it:

# %%
vector = interp.steering_vector(model, pairs, model.cfg.n_layers)
tokens, values = interp.projection(model, PROMPT, vector)
list(zip(tokens, [round(v, 2) for v in values.tolist()], strict=True))

# %% [markdown]
# **On Phi-2**: build pairs for a behaviour you care about (`pairs_file = "pairs.jsonl"` in a config,
# or `PromptPairs.from_strings`), sweep the middle layers with multipliers 1–8 and read the samples:
# a useful vector changes the behaviour at a multiplier where the KL to the unsteered run stays small.
