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
# # Sparse dictionaries: train an SAE, evaluate it, read its features
#
# A sparse autoencoder (SAE) rewrites an activation as a sparse sum of learned directions, its
# **latents** (features). Here: a TopK SAE (Gao et al. 2024) on the toy model's middle residual stream,
# trained from activations streamed through the model; its reconstruction quality and what splicing it
# in costs the model (CE loss recovered); then a **feature browser** over its latents and one latent's
# **card**: where it fires (top contexts, each token's activation as its background), how often
# (density, histogram) and what its decoder direction promotes through the unembedding.

# %% tags=["parameters"]
MODEL = "toy"  # or "microsoft/phi-2" (GPU advised; give TEXTS a real corpus)
HOOK = "blocks.2.hook_resid_pre"  # Phi-2: e.g. "blocks.16.hook_resid_pre"
TRAIN_BATCHES = 20  # batches of 64 rows
TEXTS = [
    "When Mary and John went to the store, John gave a drink to Mary",
    "Then, Adam went to the park, and Adam was happy",
]  # the corpus for a model other than the toy (the toy uses its own training mixture)

# %%
import random
import tempfile

import torch

import interp
from interp.dictionaries import evaluate_on_model, make_dictionary, train_from_model
from interp.dictionaries.neuronpedia import read_neuronpedia, write_neuronpedia
from interp.viz.features import feature_card_view

torch.manual_seed(0)
model = interp.load_model(MODEL)


def corpus(n_batches: int, seed: int) -> list:
    """(tokens, mask) batches: the toy's training mixture, or TEXTS tokenized (right-padded)."""
    batches = []
    if MODEL == "toy":
        from interp.toy.train import make_batch, make_tokenizer

        rng, tokenizer = random.Random(seed), make_tokenizer()
        for _ in range(n_batches):
            tokens, _ = make_batch(rng, tokenizer, 64)
            positions = torch.arange(tokens.shape[1])
            last = torch.where(tokens != 0, positions, -1).max(dim=1).values
            batches.append((tokens, positions[None, :] <= last[:, None]))
        return batches
    encoded = [model.tokenizer(text)["input_ids"] for text in TEXTS]
    width = max(map(len, encoded))
    tokens = torch.zeros(len(encoded), width, dtype=torch.long)
    mask = torch.zeros(len(encoded), width, dtype=torch.bool)
    for row, ids in enumerate(encoded):
        tokens[row, : len(ids)], mask[row, : len(ids)] = torch.tensor(ids), True
    return [(tokens, mask)] * n_batches


# %% [markdown]
# **Train.** 4 latents per residual dimension, 16 active per token; one forward per batch feeds the SAE's
# shuffling buffer (the forward stops after the block the hook is in).

# %%
train, held_out = corpus(TRAIN_BATCHES, seed=0), corpus(4, seed=99)
d_model = model.cfg.d_model
sae = make_dictionary("topk", d_in=d_model, d_sae=4 * d_model, k=16, hook_name=HOOK)
n_tokens = sum(int(mask.sum()) for _, mask in train)
train_from_model(model, train, [sae], batch_tokens=1024, buffer_tokens=16384, n_tokens=n_tokens)

# %% [markdown]
# **Evaluate** on held-out tokens: explained variance of the reconstruction, and CE loss recovered,
# (CE zero-ablated − CE spliced) / (CE zero-ablated − CE clean): 1 means splicing the SAE in costs
# nothing, 0 that it is as bad as deleting the residual stream.

# %%
metrics = evaluate_on_model(model, sae, held_out)
{k: round(v, 3) for k, v in metrics.to_dict().items() if isinstance(v, float)}

# %% [markdown]
# How often each latent fires (its density, on a log scale): dead latents sit in the lowest bin, and
# latents that fire on most tokens at the right; a healthy SAE has most latents in between.

# %%
import plotly.graph_objects as go

edges = metrics.histogram_edges.tolist()
go.Figure(
    go.Bar(x=[(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])], y=metrics.histogram_counts.tolist()),
    layout=dict(title="latent density", xaxis_title="log10(density)", yaxis_title="latents", height=300),
)

# %% [markdown]
# **Browse the latents**: the 64 densest, over the held-out corpus. Search by token (try `Mary` or
# `and`), sort by density or max activation, click a latent for its card.

# %%
cards = interp.feature_cards(
    model, sae, held_out, top_n=64, label="sae", n_contexts=8, context_before=10, context_after=2
)
interp.FeatureBrowser(cards, f"TopK SAE at {HOOK}")

# %% [markdown]
# **One card.** A latent whose top contexts all peak on `" and"` right after a name: the opening
# "When Mary and John" of an IOI sentence (a previous-token pattern). Its promoted tokens are read
# through the final LayerNorm and unembedding, as TransformerLens's logit lens reads a direction.

# %%
names: set[str] = set()
if MODEL == "toy":
    from interp.toy.vocab import HELD_OUT_NAMES, TRAIN_NAMES

    names = set(TRAIN_NAMES + HELD_OUT_NAMES)


def after_a_name(card) -> bool:
    peaks = [
        (c.tokens[c.max_index - 1].strip() if c.max_index else "", c.tokens[c.max_index])
        for c in card.contexts
    ]
    return bool(peaks) and all(prev in names and token == " and" for prev, token in peaks)


card = next((c for c in cards if after_a_name(c)), cards[0])
feature_card_view(card)

# %% [markdown]
# **Share it**: the cards in Neuronpedia's feature JSON (SAEDashboard's batch layout), read back.

# %%
path = write_neuronpedia(
    cards, tempfile.mkdtemp() + "/batch-0.json", model_id=MODEL, layer=2, sae_set="res-topk"
)
again = read_neuronpedia(path)
[(c.feature, round(c.density, 4), c.promoted[0][0]) for c in again[:5]]

# %% [markdown]
# ## Attribute IOI to features, then check the attribution by patching
#
# On IOI pairs ("When Mary and John went to the store, John gave a drink to" → " Mary"; corrupted:
# the second "John" becomes "Mary"), **feature attribution** (Marks et al. 2024) estimates, to first
# order, how much patching each latent from the clean run into the corrupted run (denoising) would move
# the logit difference (answer − wrong name), from one gradient: (a_clean − a_corrupted) · ∂metric/∂a,
# summed over positions. The SAE is spliced in with its **error term** (what it fails to reconstruct),
# so the model's outputs are unchanged and the error is a node of its own. The pairs are the largest
# group of one token length (attribution resolves positions).

# %%
from interp.data.tasks import build_pairs
from interp.data.tasks.options import TaskConfig
from interp.methods.features.validation import check_feature_attribution

pairs = build_pairs(TaskConfig(name="ioi", n_pairs=32), model, seed=0)
pairs = pairs.select(max(pairs.length_groups(), key=len))
attribution = interp.feature_attribution(model, sae, pairs)  # [feature, pos], mean over prompts
per_latent = attribution.values[: sae.d_sae].sum(1)
top = per_latent.abs().argsort(descending=True)[:8].tolist()
error_label = f"{HOOK}[error]"
{"pairs": len(pairs), "error term": round(float(attribution.values[sae.d_sae].sum()), 2)} | {
    f"latent {i}": round(float(per_latent[i]), 3) for i in top
}

# %% [markdown]
# **Validate by exact patching.** An estimate is only as good as the linearisation behind it. For every
# latent the pairs move, `check_feature_attribution` also patches that latent alone, at every position,
# from the clean run (`patch_latents` with a `LatentPatch`) and measures the real change of the logit
# difference. On the diagonal of the scatter the estimate is exact.
#
# What it shows on the toy (seed 0; the test `tests/methods/features/test_validation.py` asserts the
# same check): the **ranking agrees** (Pearson about 0.9; the top 5 latents by estimate are the top 5 by
# exact effect) but the **scale does not**: every large estimate is too small, by about 1.7× in a
# least-squares fit, and some latents by more than 2× (compare the `exact / estimate` column). The
# corrupted run is confidently wrong (logit difference about −10), where the metric is flatter than
# along the whole patch, so the gradient under-reads it. On other prompt samples the correlation stays
# near 0.9 but the top 5 can swap members with the next five: read the top of the list as a shortlist to
# patch, not as measured effects. The error term's estimate is also large next to the latents' sum: this
# small SAE leaves part of the IOI signal unexplained.

# %%
check = check_feature_attribution(model, sae, pairs)
labels = [f"latent {i}" for i in check.latents.tolist()]
lim = float(torch.cat([check.estimate, check.exact]).abs().max()) * 1.1
go.Figure(
    [
        go.Scatter(x=check.estimate, y=check.exact, mode="markers", text=labels, name="latents"),
        go.Scatter(x=[-lim, lim], y=[-lim, lim], mode="lines", line=dict(dash="dot"), name="exact = estimate"),
    ],
    layout=dict(
        title=f"{len(labels)} latents: Pearson {check.pearson():.2f}, slope {check.slope():.2f}, "
        f"top-5 overlap {check.overlap(5)}/5",
        xaxis_title="attribution (estimated change of logit diff)",
        yaxis_title="exact patching (change of logit diff)",
        height=450,
    ),
)

# %%
rows = {int(i): (float(e), float(x)) for i, e, x in zip(check.latents, check.estimate, check.exact)}
{
    "base logit diff": round(check.base_metric, 2),
    "patch every latent": round(check.all_latents_exact, 2),
    "error term (estimate)": round(check.error_estimate, 2),
} | {
    f"latent {i}": {"estimate": round(e, 3), "exact": round(x, 3), "exact / estimate": round(x / e, 2)}
    for i, (e, x) in ((i, rows[i]) for i in check.top(8))
}

# %% [markdown]
# **The top latents' cards**, by exact effect: where each fires over the held-out corpus and what it
# promotes. A latent that matters for IOI should read a name or the positions around the repeated name.

# %%
top_cards = interp.feature_cards(
    model, sae, held_out, features=check.top(3, "exact"), label="sae", n_contexts=6, context_before=10
)
interp.FeatureBrowser(top_cards, "IOI's top latents by exact patching")
