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
# # Representations: linear probes, DAS and steering along a learned subspace
#
# Where does a model hold a variable? A **linear probe** asks whether a hook point's activation at one
# position *reads* it (held-out accuracy, against a probe trained on shuffled labels). **Distributed
# alignment search** (DAS; Geiger et al. 2023) asks whether the model *uses* it there: it learns a
# low-rank subspace such that copying it from a source prompt into a base prompt moves the answer the
# way the variable predicts, scored on held-out pairs against a random subspace of the same rank and
# the class means' leading directions. The learned subspace is also a **steering vector**.
#
# The variable here is IOI's indirect object (IO): "When Mary and John went to the store, John gave a
# drink to" → " Mary". Prompts over 8 names, of one token length; each is paired with its *swapped*
# twin (the second mention of the subject replaced by the IO, so the answer becomes the subject).

# %% tags=["parameters"]
MODEL = "toy"  # or "microsoft/phi-2" (GPU advised)
N_PROMPTS = 480
RANK = 2  # DAS subspace rank
EPOCHS = 10

# %%
import plotly.graph_objects as go
import torch

import interp
from interp.data.tasks.ioi_labels import S2_POSITION, ioi_labels

torch.manual_seed(0)
model = interp.load_model(MODEL)
data = ioi_labels(model, N_PROMPTS, seed=0)
layers = model.cfg.n_layers
HOOKS = [f"blocks.{layer}.hook_resid_pre" for layer in range(layers)] + [f"blocks.{layers - 1}.hook_resid_post"]
print(len(data.prompts), "prompts of", data.n_tokens, "tokens, e.g.", repr(data.prompts[0]))

# %% [markdown]
# **Probes, layer by layer.** Which of the 8 names is the IO, read at the last position and at the
# second mention of the subject (S2, five tokens from the end). Chance is 1/8; the dotted lines are the
# shuffled-label controls.

# %%
probes = {
    "last position": interp.probe_layers(model, data.prompts, data.io, HOOKS),
    "S2": interp.probe_layers(model, data.prompts, data.io, HOOKS, position=S2_POSITION),
}
labels = [h.replace("blocks.", "L").replace(".hook_", " ") for h in HOOKS]
figure = go.Figure(layout=dict(title="probe: which name is the indirect object", height=350,
                               xaxis_title="residual stream", yaxis=dict(title="held-out accuracy", range=[0, 1.05])))
for name, result in probes.items():
    figure.add_scatter(x=labels, y=result.accuracy.tolist(), name=name, mode="lines+markers")
    figure.add_scatter(x=labels, y=result.shuffled_accuracy.tolist(), name=f"{name}, shuffled labels",
                       mode="lines", line=dict(dash="dot"))
figure.add_hline(y=1 / len(data.names), line=dict(color="grey", dash="dash"))
figure

# %% [markdown]
# On the toy: at the last position the IO is only partly readable before layer 3 (a mix of the names
# in context) and fully after the name mover L3H2; at S2 it is readable from layer 1 on. Readable is not
# used: DAS tests that.
#
# **DAS with its baselines**, at the last position before and after layer 3, and at S2 before layer 1.

# %%
sites = [(f"blocks.{layers - 1}.hook_resid_pre", -1), (f"blocks.{layers - 1}.hook_resid_post", -1),
         ("blocks.1.hook_resid_pre", S2_POSITION)]
das = {
    (hook, position): interp.fit_das(model, data.prompts, data.swapped, data.answers, data.s, hook, position,
                                     rank=RANK, epochs=EPOCHS, lr=0.01)
    for hook, position in sites
}
names = [f"{h.replace('blocks.', 'L').replace('.hook_', ' ')} @ {p}" for h, p in das]
go.Figure(
    [go.Bar(name=label, x=names, y=[getattr(r, field).item() for r in das.values()])
     for label, field in [("DAS", "accuracy"), ("class means", "mean_difference_accuracy"), ("random", "random_accuracy")]],
    layout=dict(title=f"held-out interchange accuracy, rank {RANK}", barmode="group", height=350,
                yaxis=dict(title="answer moved to the source's", range=[0, 1.05])),
)

# %% [markdown]
# Interchanging the last position moves nothing before layer 3: the choice of name is not made there.
# At the final residual it is (a rank-2 subspace for 8 names moves most answers), and at S2 it is made
# *before* the previous-token head L1H0 carries it on to the next position.
#
# **Steering with the DAS direction.** `interp.das_steer` turns the final-residual subspace into a
# `Steer`: from the mean coordinates of prompts whose answer is one name to another's. A rank-2
# subspace cannot keep 8 names apart, so take the (IO, subject) pair whose class means lie farthest
# apart in it. On the prompts with that IO and subject, steering toward the subject should make the
# model say the subject; a random vector of the same norm should not. (On the toy, the DAS direction
# flips every answer from multiplier 2; the random vector none.)

# %%
result = das[(f"blocks.{layers - 1}.hook_resid_post", -1)]
means = result.class_means  # [name, rank]: mean coordinates of the prompts answering each name
pairs = {(int(a), int(b)) for a, b in zip(data.io, data.s)}
io_name, s_name = max(pairs, key=lambda p: (means[p[0]] - means[p[1]]).norm())
rows = [i for i in range(len(data.prompts)) if data.io[i] == io_name and data.s[i] == s_name]
prompts = [data.prompts[i] for i in rows]
steer = interp.das_steer(result, toward=s_name, away=io_name, positions=[data.n_tokens - 1])
g = torch.Generator().manual_seed(0)
random = torch.randn(model.cfg.d_model, generator=g)
random = random / random.norm() * steer.vector.norm()
multipliers = [0.0, 0.5, 1.0, 2.0, 4.0]


def said_subject(vector, multiplier):
    out = interp.generate(model, prompts, 1, interventions=[interp.Steer(steer.layer, vector, multiplier, steer.positions)],
                          return_logits=True, stop_at_eos=False)
    first = torch.stack([logits[0] for logits in out.step_logits]).argmax(-1)
    return (first == data.answers[s_name]).float().mean().item()


go.Figure(
    [go.Scatter(x=multipliers, y=[said_subject(v, m) for m in multipliers], name=name, mode="lines+markers")
     for name, v in [("DAS direction", steer.vector), ("random, same norm", random)]],
    layout=dict(title=f"steering {len(prompts)} prompts (IO {data.names[io_name]}, S {data.names[s_name]}) toward the subject",
                xaxis_title="multiplier", yaxis=dict(title="fraction answering the subject", range=[-0.05, 1.05]), height=350),
)
