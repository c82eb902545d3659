"""Feature-circuit edge scores against exact edge patching, on a random model that is linear nowhere.

The reference is written here with the bridge's hooks (slow: two runs per edge): the receiver computes
its value with the sender at its source-run value and every other node (latents and error terms of
every site) at its base-run value; the base run then continues with that one receiver changed (for the
metric as receiver, the frozen run's metric is read). `patch_feature_edge` equals it for every kind of
edge (input, latent and error senders; latent and metric receivers).

EAP and EAP-IG estimate that effect to first order: a corruption is made continuous (the corrupted
token's embedding is the clean one's plus s v), and as s shrinks each estimate's error falls as s^2
while the effect falls as s, on edges into latents (through a LayerNorm, through attention) and into
the metric (through the final LayerNorm). More steps do not make EAP-IG exact here: it integrates the
gradient along the line between the two runs' *inputs*, where every node moves, while the edge patch
moves one sender into one receiver; the two agree where the model is linear between them
(`test_circuits.TestExactWhereAffine`) and to first order everywhere (here).
"""

from __future__ import annotations

import pytest
import torch

from interp.data.prompts import PromptPairs
from interp.dictionaries import make_dictionary
from interp.dictionaries.splice import splice
from interp.methods.features.circuit_evaluation import patch_feature_edge
from interp.methods.features.circuits import feature_circuit
from interp.model.loading import load_model
from methods.features.test_circuits import largest_edge

D_SAE = 8
CLEAN_TOKEN, CORRUPTED_TOKEN, ANSWER, WRONG = 30, 90, 20, 21
SCALES = (1.0, 0.25)

# (sender pattern, receiver pattern): a label, or a site's prefix `<hook>[` (its latents)
EDGES = [
    ("input", "blocks.0.hook_resid_post["),
    ("blocks.0.hook_resid_post[", "blocks.1.hook_mlp_out["),  # through layer 1's LayerNorm
    ("blocks.0.hook_resid_post[error]", "blocks.1.hook_mlp_out["),
    ("blocks.0.hook_resid_post[", "blocks.1.hook_resid_post["),  # through layer 1's attention
    ("blocks.1.hook_resid_post[", "metric"),  # through the final LayerNorm
    ("blocks.1.hook_resid_post[error]", "metric"),
]


@pytest.fixture(scope="module")
def model(tiny_phi_dir):
    return load_model(tiny_phi_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def dictionaries(model):
    d = model.cfg.d_model
    dicts = [
        make_dictionary("relu", d_in=d, d_sae=D_SAE, hook_name="blocks.0.hook_resid_post", seed=11),
        make_dictionary(
            "relu",
            d_in=d,
            d_sae=D_SAE,
            kind="transcoder",
            seed=12,
            hook_name="blocks.1.ln1.hook_normalized",
            hook_name_out="blocks.1.hook_mlp_out",
        ),  # fmt: skip
        make_dictionary("relu", d_in=d, d_sae=D_SAE, hook_name="blocks.1.hook_resid_post", seed=13),
    ]
    for x in dicts:
        with torch.no_grad():
            x.b_enc.fill_(5.0)  # every latent active in both runs: no ReLU kink along the way
    return dicts


def pairs_of() -> PromptPairs:
    """Two prompts ending in CLEAN_TOKEN, corrupted to CORRUPTED_TOKEN (whose embedding `scaled` sets)."""
    clean = torch.tensor([[40, 41, 42, 43, CLEAN_TOKEN], [50, 51, 52, 53, CLEAN_TOKEN]])
    corrupted = clean.clone()
    corrupted[:, -1] = CORRUPTED_TOKEN
    n = len(clean)
    return PromptPairs(
        clean, corrupted, torch.full((n,), 5), torch.full((n,), ANSWER), torch.full((n,), WRONG)
    )


@torch.no_grad()
def scaled(model, s: float) -> None:
    """The corrupted token's embedding: the clean one's plus s v, v a fixed random direction 1/16 of the
    embedding's norm (small enough that s = 1 is already where second order dominates what is left)."""
    W_E = model.original_model.model.embed_tokens.weight
    v = torch.randn(W_E.shape[1], generator=torch.Generator().manual_seed(0))
    W_E[CORRUPTED_TOKEN] = W_E[CLEAN_TOKEN] + s * W_E[CLEAN_TOKEN].norm() * v / v.norm() / 16


@torch.no_grad()
def exact_edge(model, dicts, pairs: PromptPairs, source: str, target: str) -> torch.Tensor:
    """Per prompt, the exact effect of one edge (denoising: base corrupted, source clean), by hooks."""
    rows = torch.arange(len(pairs))

    def metric(logits):
        return logits[rows, -1, pairs.answer] - logits[rows, -1, pairs.wrong]

    def split(label: str) -> tuple[str, str, int | None]:
        """(hook written, point, latent) of a node label."""
        writes, index = label[:-1].split("[")
        return (
            writes,
            ("hook_error" if index == "error" else "hook_acts"),
            (None if index == "error" else int(index)),
        )

    with splice(model, dicts, error=True) as spliced:
        by_writes = {spliced.entry(d).writes: d for d in dicts}
        names = [spliced.name(d, p) for d in dicts for p in ("hook_acts", "hook_error")]
        _, base = model.run_with_cache(pairs.corrupted_tokens, names_filter=names)
        _, clean = model.run_with_cache(pairs.clean_tokens, names_filter=names)
        base_metric = metric(model(pairs.corrupted_tokens))
        sender = None if source == "input" else split(source)
        receiver = None if target == "metric" else split(target)
        sender_hook = None if sender is None else spliced.name(by_writes[sender[0]], sender[1])
        receiver_hook = None if receiver is None else spliced.name(by_writes[receiver[0]], receiver[1])
        got = {}

        def freeze(value, hook):  # every node at its base value, the sender at its source value
            if hook.name == receiver_hook:
                got["value"] = value.clone()
            frozen = base[hook.name].clone()
            if hook.name == sender_hook:
                if sender[2] is None:
                    frozen = clean[hook.name]
                else:
                    frozen[..., sender[2]] = clean[hook.name][..., sender[2]]
            return frozen

        tokens = pairs.clean_tokens if source == "input" else pairs.corrupted_tokens
        frozen_logits = model.run_with_hooks(tokens, fwd_hooks=[(name, freeze) for name in names])
        if receiver is None:
            return metric(frozen_logits) - base_metric

        def patch(value, hook):  # the base run, the receiver as it computed with the sender patched
            if receiver[2] is None:
                return got["value"]
            value = value.clone()
            value[..., receiver[2]] = got["value"][..., receiver[2]]
            return value

        patched = model.run_with_hooks(pairs.corrupted_tokens, fwd_hooks=[(receiver_hook, patch)])
        return metric(patched) - base_metric


@pytest.fixture(scope="module")
def measured(model, dictionaries):
    """Per scale s: every chosen edge's exact effect and its EAP and EAP-IG scores."""
    pairs = pairs_of()
    original = model.original_model.model.embed_tokens.weight[CORRUPTED_TOKEN].clone()
    out = {}
    try:
        for s in SCALES:
            scaled(model, s)
            eap = feature_circuit(model, dictionaries, pairs, method="eap")
            ig = feature_circuit(model, dictionaries, pairs, method="eap_ig", steps=16)
            if s == SCALES[0]:
                edges = [largest_edge(eap, *pattern) for pattern in EDGES]
            out[s] = {
                edge: (
                    float(exact_edge(model, dictionaries, pairs, *edge).mean()),
                    eap.edge(*edge),
                    ig.edge(*edge),
                )
                for edge in edges
            }
    finally:
        with torch.no_grad():
            model.original_model.model.embed_tokens.weight[CORRUPTED_TOKEN] = original
    return out


class TestAgainstExactEdgePatching:
    def test_patch_feature_edge_equals_the_hooked_reference(self, model, dictionaries):
        pairs = pairs_of()
        scaled(model, 1.0)
        eap = feature_circuit(model, dictionaries, pairs)
        for pattern in EDGES:
            edge = largest_edge(eap, *pattern)
            reference = exact_edge(model, dictionaries, pairs, *edge)
            assert float(reference.abs().max()) > 1e-4, edge
            torch.testing.assert_close(
                patch_feature_edge(model, dictionaries, pairs, *edge), reference, rtol=0,
                atol=1e-6 + 1e-4 * float(reference.abs().max()),
            )  # fmt: skip

    @pytest.mark.parametrize("estimate", ["eap", "eap_ig"])
    def test_estimates_agree_with_it_to_first_order(self, measured, estimate):
        """exact(s) / s settles, and |estimate - exact| falls as s^2: quartering s divides it by ~16."""
        column = {"eap": 1, "eap_ig": 2}[estimate]
        big, small = (measured[s] for s in SCALES)
        ratio = SCALES[1] / SCALES[0]
        for edge in big:
            exact_big, exact_small = big[edge][0], small[edge][0]
            error_big = abs(big[edge][column] - exact_big)
            error_small = abs(small[edge][column] - exact_small)
            assert abs(exact_big) > 1e-4, edge
            # the effect is first order in s: exact(s)/s changes by the second-order term only
            assert abs(exact_small / ratio - exact_big) < 0.2 * abs(exact_big), edge
            # the estimate's error is second order: quartering s divides it by ~16 (by 4 if it were
            # first order); 2e-7 is float32's floor on metric differences of this size
            assert error_big > 1e-3 * abs(exact_big), edge  # a nonlinear model: not exact at s = 1
            assert error_small < error_big / 6 + 2e-7, (edge, error_big, error_small)
