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
# # Ablations and a scripted experiment
#
# An ablation replaces a component's output with something that carries no information about the
# prompt (zeros, its mean over reference prompts, or its value on a resampled prompt) and measures what
# the metric loses. Unlike patching it needs no corrupted run to compare against, but what "no
# information" means is a choice: mean ablation over the corrupted prompts is the usual one for IOI.

# %% tags=["parameters"]
MODEL = "toy"  # or "microsoft/phi-2"
OUT = "runs/notebook-ioi"

# %%
import torch

import interp
from interp.methods.ablation import Component, ablate, ablation_sweep
from interp.data.tasks.options import TaskConfig
from interp.data.tasks import build_pairs
from interp.viz.charts import ranked_bars

model = interp.load_model(MODEL)
pairs = build_pairs(TaskConfig(name="ioi", n_pairs=16), model, seed=0)
metric = interp.make_metric("logit_diff", pairs.answer, pairs.wrong)
rows = torch.arange(len(pairs))
final = pairs.final_pos

# %% [markdown]
# An ablation is a context manager: hooks are removed when the block ends, also on errors.

# %%
from interp.model.hooks import active_hook_count

with torch.no_grad():
    clean = metric(model(pairs.clean_tokens)[rows, final], rows).mean()
    with ablate(model, [Component("head", 3, 2)], "mean", reference=pairs.corrupted_tokens):  # the name mover
        ablated = metric(model(pairs.clean_tokens)[rows, final], rows).mean()
assert active_hook_count(model) == 0  # the block removed its hooks
float(clean), float(ablated)

# %%
sweep = ablation_sweep(model, pairs, "mean")
ranked = interp.top_heads(-sweep.values, 6)
ranked_bars([f"L{layer}H{head}" for layer, head, _ in ranked], [-v for *_, v in ranked], "mean ablation: metric change (negative = the head is needed)", "change")

# %% [markdown]
# The same analyses as a scripted, resumable experiment (what `interp run` does):

# %%
from interp.runner.config import parse_config
from interp.runner.run import run_experiment

config = parse_config(
    {
        "model": {"source": MODEL},
        "task": {"name": "ioi", "n_pairs": 16},
        "analysis": [{"kind": "ablate_head", "method": "mean"}, {"kind": "patch_head_out"}],
    }
)
results = run_experiment(config, OUT, resume=True, progress=False)

# %% [markdown]
# `resume=True` reuses the finished units of the same config; after changing the config, pass
# `force=True` (or another `OUT`) to start again. The report is one self-contained HTML file: open it
# in a web browser (JupyterLab shows HTML files in a sandbox; click *Trust HTML* to see its figures).

# %%
from IPython.display import Markdown

Markdown(f"Report: [{OUT}/report.html]({OUT}/report.html)")
