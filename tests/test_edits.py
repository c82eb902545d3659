"""The block's edit points (interp.engine.forward.block with interp.engine.edits): an edit at every hook
point gives what TransformerLens's own `run_with_hooks` gives with the same hook; `Keep` reads what
`run_with_cache` caches; the split receiver inputs change only their receiver; a leading variant axis
runs many patches at once; `Freeze` keeps the value and stops the gradient; bad names are refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from closeness import assert_close

from interp.engine.edits import Add, Freeze, Keep, Replace, Site
from interp.engine.forward import PhiWeights, block, final_logits, forward, layer_norm, unembed
from interp.engine.hook_points import BLOCK_POINTS, SPLIT_INPUTS, pos_axis_from_end
from interp.model.loading import load_model

LAYER = 1
POINTS = [p for p in BLOCK_POINTS if p not in SPLIT_INPUTS]


@pytest.fixture(scope="module")
def tiny(tiny_phi_dir):
    return load_model(tiny_phi_dir)


@pytest.fixture(scope="module")
def w(tiny):
    return PhiWeights.from_model(tiny)


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(5, 300, (2, 7), generator=torch.Generator().manual_seed(3))


def wobble(act: torch.Tensor, site: Site) -> torch.Tensor:
    """A position-dependent edit: scale each position by 0.75 + 0.25 cos(position), plus a pattern along
    the last axis (a scale alone would vanish in a LayerNorm); scores and patterns are scaled only."""
    axis = pos_axis_from_end(site.name)
    at = torch.arange(site.start, site.stop, dtype=torch.float32)
    shape = [1] * act.dim()
    shape[axis] = site.n
    factor = (0.75 + 0.25 * torch.cos(at)).view(shape)
    if site.name.endswith(("hook_pattern", "hook_attn_scores", "hook_scale")):
        return act * factor
    return act * factor + 0.1 * torch.cos(torch.arange(act.shape[-1], dtype=torch.float32))


def logits(w, tokens, edits):
    return final_logits(w, forward(w, w.W_E[tokens], edits).resid_final)


@pytest.mark.parametrize("point", POINTS)
def test_each_edit_point_matches_transformer_lens_run_with_hooks(tiny, w, tokens, point):
    name = f"blocks.{LAYER}.{point}"

    def hook(act, hook):
        return wobble(act, Site(name, LAYER, 0, act.shape[pos_axis_from_end(name)]))

    tiny.set_use_attn_result(point == "attn.hook_result")
    try:
        expected = tiny.run_with_hooks(tokens, fwd_hooks=[(name, hook)])
    finally:
        tiny.set_use_attn_result(False)
    got = logits(w, tokens, {name: wobble})
    assert_close(got, expected)
    assert (got - logits(w, tokens, None)).abs().max() > 1e-3  # the edit does something


def test_keep_reads_what_run_with_cache_caches(tiny, w, tokens):
    store: dict[str, torch.Tensor] = {}
    names = [f"blocks.{layer}.{p}" for layer in range(w.n_layers) for p in BLOCK_POINTS]
    forward(w, w.W_E[tokens], {name: Keep(store) for name in names})
    tiny.set_use_attn_result(True)
    try:
        _, cache = tiny.run_with_cache(tokens)
    finally:
        tiny.set_use_attn_result(False)
    for name in names:
        if name.endswith(tuple(SPLIT_INPUTS)):  # each receiver's input is the residual stream, unedited
            layer = int(name.split(".")[1])
            resid = cache[f"blocks.{layer}.hook_resid_pre"]
            expected = resid if name.endswith("hook_mlp_in") else resid[:, :, None].expand_as(store[name])
        else:
            expected = cache[name]
        assert_close(store[name], expected, what=name)


@pytest.mark.parametrize("part", ["q", "k", "v", "mlp"])
def test_a_split_input_changes_only_its_receiver(tiny, w, tokens, part):
    """Reference: the bridge's hook on that receiver's LayerNorm output (the q/k/v projection's or the
    MLP's input) given the LayerNorm of the changed residual, everything else as it is."""
    delta = 0.5 * torch.cos(torch.arange(w.W_E.shape[1], dtype=torch.float32))
    point = "hook_mlp_in" if part == "mlp" else f"hook_{part}_input"
    got = logits(w, tokens, {f"blocks.{LAYER}.{point}": Add(delta)})
    _, cache = tiny.run_with_cache(tokens)
    changed = cache[f"blocks.{LAYER}.hook_resid_pre"] + delta
    normed = layer_norm(changed, w.ln_w[LAYER], w.ln_b[LAYER], w.eps)
    target = f"blocks.{LAYER}.mlp.hook_in" if part == "mlp" else f"blocks.{LAYER}.attn.{part}.hook_in"
    expected = tiny.run_with_hooks(tokens, fwd_hooks=[(target, lambda act, hook: normed)])
    assert_close(got, expected)
    assert (got - logits(w, tokens, None)).abs().max() > 1e-3


def test_a_split_input_of_one_head_is_that_heads_own(w, tokens):
    """Changing one head's q input equals recomputing that head's query from its own LayerNorm."""
    delta = torch.randn(w.W_E.shape[1], generator=torch.Generator().manual_seed(0))
    head = 1
    H = w.n_heads
    per_head = torch.zeros(H, w.W_E.shape[1])
    per_head[head] = delta
    got = logits(w, tokens, {f"blocks.{LAYER}.hook_q_input": Add(per_head)})
    store: dict[str, torch.Tensor] = {}
    forward(w, w.W_E[tokens], {f"blocks.{LAYER}.hook_resid_pre": Keep(store)})
    resid = store[f"blocks.{LAYER}.hook_resid_pre"]
    normed = layer_norm(resid + delta, w.ln_w[LAYER], w.ln_b[LAYER], w.eps)
    d = w.d_head
    q_head = normed @ w.W_QKV[LAYER][head * d : (head + 1) * d].T + w.b_QKV[LAYER][head * d : (head + 1) * d]

    def own_query(q, site):
        q = q.clone()
        q[:, :, head] = q_head
        return q

    expected = logits(w, tokens, {f"blocks.{LAYER}.attn.hook_q": own_query})
    assert_close(got, expected)
    assert (got - logits(w, tokens, None)).abs().max() > 1e-3


def test_a_leading_variant_axis_runs_every_patch_at_once(w, tokens):
    deltas = torch.randn(3, w.W_E.shape[1], generator=torch.Generator().manual_seed(1))
    name = f"blocks.{LAYER}.hook_resid_pre"
    got = logits(w, tokens, {name: Add(deltas[:, None, None, :])})  # variant batch pos d_vocab
    assert got.shape == (3, *tokens.shape, w.W_U.shape[0])
    for i, delta in enumerate(deltas):
        assert_close(got[i], logits(w, tokens, {name: Add(delta)}), what=i)


def test_replace_takes_another_runs_activation(w, tokens):
    other = torch.flip(tokens, [1])
    store: dict[str, torch.Tensor] = {}
    name = f"blocks.{LAYER}.attn.hook_z"
    forward(w, w.W_E[other], {name: Keep(store)})
    got = logits(w, tokens, {name: Replace(store[name])})
    expected = logits(w, tokens, {name: lambda z, site: store[name]})  # the step-by-step path
    assert_close(got, expected)  # Replace at hook_z skips the attention it replaces


def test_freeze_keeps_the_value_and_stops_the_gradient(w, tokens):
    """Frozen LayerNorm scale of block 0: same logits, and the gradient of a hand-written forward whose
    first LayerNorm divides by a constant standard deviation."""
    embed = w.W_E[tokens].detach().requires_grad_(True)
    frozen = final_logits(w, forward(w, embed, {"blocks.0.ln1.hook_scale": Freeze()}).resid_final)
    (grad,) = torch.autograd.grad(frozen[:, -1, 3].sum(), embed)
    embed2 = w.W_E[tokens].detach().requires_grad_(True)
    centred = embed2 - embed2.mean(-1, keepdim=True)
    std = (centred.pow(2).mean(-1, keepdim=True) + w.eps).sqrt().detach()
    h = centred / std * w.ln_w[0] + w.ln_b[0]

    def constant_std(act, site):
        return h

    x = block(w, 0, embed2, edits={"ln1.hook_out": [constant_std]}).resid_post
    for layer in range(1, w.n_layers):
        x = block(w, layer, x).resid_post
    reference = unembed(w, x)
    (expected,) = torch.autograd.grad(reference[:, -1, 3].sum(), embed2)
    assert_close(frozen, logits(w, tokens, None))
    assert_close(grad, expected)
    unfrozen = w.W_E[tokens].detach().requires_grad_(True)
    (free,) = torch.autograd.grad(unembed(w, forward(w, unfrozen).resid_final)[:, -1, 3].sum(), unfrozen)
    assert (free - grad).abs().max() > 1e-4 * free.abs().max()  # freezing changed the gradient


def test_unknown_edit_points_are_refused_naming_what_is_allowed(w, tokens):
    with pytest.raises(ValueError, match=r"blocks.1.attn.hook_zz.*edit points are blocks"):
        forward(w, w.W_E[tokens], {"blocks.1.attn.hook_zz": Keep({})})
    with pytest.raises(ValueError, match=r"blocks.9.hook_resid_pre"):
        forward(w, w.W_E[tokens], {"blocks.9.hook_resid_pre": Keep({})})


def readme_hook_table() -> dict[str, str]:
    """Block hook point (short name) -> dims, from README's "Hooks (Phi specifics)" table."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme[readme.index("### Hooks (Phi specifics)") :]
    table = table[: table.index("\n\n", table.index("| hook |"))]
    rows = {}
    for line in table.splitlines()[2:]:
        names_cell, dims_cell = line.split("|")[1:3]
        dims = dims_cell.strip().strip("`")
        module = ""
        for name in re.findall(r"`([^`]+)`", names_cell):
            if name.startswith("blocks.{L}."):
                name = name.removeprefix("blocks.{L}.")
                module = name.split("/")[0][: name.index("hook_")]
            elif not name.startswith("blocks"):
                if not module and not names_cell.strip().startswith("`blocks"):
                    continue  # a model-level row (hook_embed, ln_final.*)
                name = module + name
            first, *others = name.split("/")
            rows[first] = dims
            for other in others:
                rows[
                    module + other if other.startswith("hook_") else first[: len(first) - len(other)] + other
                ] = dims
    return rows


def test_the_schema_is_the_readme_hook_table():
    table = readme_hook_table()
    assert set(table) == set(BLOCK_POINTS), set(table) ^ set(BLOCK_POINTS)
    for point, dims in BLOCK_POINTS.items():
        assert table[point] == dims, point
