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
# # Head attribution: direct logit attribution, logit lens, head scores

# %% tags=["parameters"]
MODEL = "toy"  # or "microsoft/phi-2"

# %%
import interp
from interp.methods.direct_logit_attribution import direct_logit_attribution
from interp.methods.logit_lens import logit_lens
from interp.data.tasks.options import TaskConfig
from interp.data.tasks import build_pairs
from interp.viz.charts import logit_lens_chart
from interp.viz.heatmaps import layer_head_heatmap

model = interp.load_model(MODEL)
pairs = build_pairs(TaskConfig(name="ioi", n_pairs=16), model, seed=0)

# %% [markdown]
# DLA: what each head writes directly into logit(answer) - logit(wrong). Components plus the two
# constant terms (final LayerNorm bias, unembedding bias) sum exactly to the logit difference.

# %%
dla = direct_logit_attribution(model, pairs)
print(f"max |sum - logit diff| = {(dla.total() - dla.logit_diff).abs().max():.2e}")
assert (dla.total() - dla.logit_diff).abs().max() <= 1e-5 * dla.logit_diff.abs().max() + 1e-4
layer_head_heatmap(dla.heads.mean(0), "direct logit attribution per head")

# %%
lens = logit_lens(model, pairs)
logit_lens_chart(lens.logit_diff.mean(-1), lens.labels, "logit lens", "logit difference")

# %%
scores = interp.head_scores(model)
layer_head_heatmap(scores["induction"], "induction score", diverging=False)

# %%
layer_head_heatmap(scores["previous_token"], "previous-token score", diverging=False)

# %% [markdown]
# **The head explorer.** Every head in one grid, coloured by its direct logit attribution; click a head
# to see its attention on the first prompt, its DLA and what the metric loses when it alone is mean
# ablated; click a row (a token) to see where it attends. On the toy, L3H2 (the name mover) attends
# from the final token not to the indirect object but to the token after the repeated name, where the
# previous-token head L1H0 wrote that name (checked below). The same explorer opens in every run's report.

# %%
if MODEL == "toy":
    _, cache = model.run_with_cache(pairs.clean_tokens)
    for i, tokens in enumerate(pairs.clean_tokens.tolist()):
        final = int(pairs.final_pos[i])
        s2 = max(p for p in range(final) if tokens[p] == int(pairs.wrong[i]))  # the repeated name
        assert cache["blocks.3.attn.hook_pattern"][i, 2, final].argmax() == s2 + 1

# %%
from interp.viz.explorer import head_explorer

head_explorer(model, pairs)
