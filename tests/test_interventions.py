"""Interventions while generating (interp.methods.interventions): every hook point the engine offers
gives, under the key/value cache, what TransformerLens's own `run_with_hooks` gives over the whole
generated text with the same hook; patches from another run's cache equal a patching hook; activations
kept while generating equal `run_with_cache`; bad interventions are refused by name."""

from __future__ import annotations

import pytest
import torch

from interp.base.errors import HookNameError, InputError
from interp.engine.incremental import Site, points
from interp.methods.generation import generate
from interp.methods.interventions import AblateHeads, Hook, Patch, Steer, ablation_values, reference_mean
from interp.model.hooks import head_axis, pos_axis
from interp.model.loading import load_model

N_NEW = 5


@pytest.fixture(scope="module")
def tiny(tiny_phi_dir):
    return load_model(tiny_phi_dir)


@pytest.fixture(scope="module")
def prompts():
    return torch.randint(5, 300, (2, 6), generator=torch.Generator().manual_seed(4))


def wobble(act: torch.Tensor, site: Site) -> torch.Tensor:
    """A position-dependent edit: scale each position by 0.75 + 0.25 cos(position) and add a pattern
    along the last axis (a scale alone would vanish in a LayerNorm)."""
    axis = pos_axis(site.name)
    at = torch.arange(site.start, site.stop, dtype=torch.float32)
    shape = [1] * act.dim()
    shape[axis] = site.n
    factor = (0.75 + 0.25 * torch.cos(at)).view(shape)
    if site.name.endswith(("hook_pattern", "hook_attn_scores")):  # a shift would write future positions
        return (act * factor).to(act.dtype)
    shift = (0.1 * torch.sin(at)).view(shape) * torch.cos(torch.arange(act.shape[-1], dtype=torch.float32))
    return (act * factor + shift).to(act.dtype)


def reference_logits(model, tokens, name, fn, chosen=None):
    """All-position logits of the bridge over `tokens` with `fn` at hook `name` (TransformerLens hooks),
    used only at the absolute positions `chosen` (all if None)."""

    def hook(act, hook):
        axis = pos_axis(name)
        out = fn(act, Site(name, None, 0, act.shape[axis]))
        if chosen is None:
            return out
        index = torch.tensor(chosen)
        return act.index_copy(axis, index, out.index_select(axis, index))

    return model.run_with_hooks(tokens, fwd_hooks=[(name, hook)])


def step_logits(gen) -> torch.Tensor:
    return torch.stack(gen.step_logits)  # batch new_pos d_vocab


@pytest.mark.parametrize("name", points(2))
def test_each_hook_point_matches_transformer_lens_run_with_hooks(tiny, prompts, name):
    gen = generate(
        tiny, prompts, N_NEW, interventions=[Hook(name, wobble)], stop_at_eos=False, return_logits=True
    )
    plain = generate(tiny, prompts, N_NEW, stop_at_eos=False, return_logits=True)
    full = torch.stack(gen.tokens)
    reference = reference_logits(tiny, full, name, wobble)[:, prompts.shape[1] - 1 : -1]
    assert (step_logits(gen) - reference).abs().max() <= 1e-4
    assert (step_logits(gen) - step_logits(plain)).abs().max() > 1e-3  # the hook does something


@pytest.mark.parametrize("positions", ["prompt", "generated", [1, 4, 7]])
@pytest.mark.parametrize(
    "name", ["blocks.1.hook_resid_pre", "blocks.0.attn.hook_pattern", "blocks.1.attn.hook_k"]
)
def test_positions_choose_where_the_hook_acts(tiny, prompts, name, positions):
    n_prompt = prompts.shape[1]
    gen = generate(
        tiny,
        prompts,
        N_NEW,
        interventions=[Hook(name, wobble, positions)],
        stop_at_eos=False,
        return_logits=True,
    )
    full = torch.stack(gen.tokens)
    total = full.shape[1]
    chosen = {"prompt": range(n_prompt), "generated": range(n_prompt, total)}.get(str(positions), positions)
    reference = reference_logits(tiny, full, name, wobble, list(chosen))[:, n_prompt - 1 : -1]
    assert (step_logits(gen) - reference).abs().max() <= 1e-4


def wobble_in_place(act: torch.Tensor, site: Site) -> None:
    """`wobble` as TransformerLens users write it: the activation edited in place, None returned."""
    act.copy_(wobble(act, site))


@pytest.mark.parametrize("positions", ["all", "prompt", "generated", [1, 4, 7]])
@pytest.mark.parametrize(
    "name", ["blocks.1.hook_resid_pre", "blocks.0.attn.hook_pattern", "blocks.1.attn.hook_k", "hook_embed"]
)
def test_in_place_hooks_honour_positions_on_both_paths(tiny, prompts, name, positions):
    """A hook that edits in place and returns None acts at `positions` only, cached or not: equal to
    TransformerLens `run_with_hooks` with the same in-place hook restricted to those positions."""
    n_prompt = prompts.shape[1]
    hook = Hook(name, wobble_in_place, positions)
    kwargs = dict(interventions=[hook], stop_at_eos=False, return_logits=True)
    cached = generate(tiny, prompts, N_NEW, **kwargs)
    full = torch.stack(cached.tokens)
    total = full.shape[1]
    chosen = {"all": range(total), "prompt": range(n_prompt), "generated": range(n_prompt, total)}
    index = torch.tensor(list(chosen.get(str(positions), positions)))
    axis = pos_axis(name)

    def restricted(act, hook):  # in place, at the chosen positions only
        edited = act.clone()
        wobble_in_place(edited, Site(name, None, 0, act.shape[axis]))
        act.index_copy_(axis, index, edited.index_select(axis, index))

    reference = tiny.run_with_hooks(full, fwd_hooks=[(name, restricted)])[:, n_prompt - 1 : -1]
    uncached = generate(tiny, prompts, N_NEW, use_cache=False, **kwargs)
    assert (step_logits(cached) - reference).abs().max() <= 1e-4 * reference.abs().max()
    assert (step_logits(uncached) - reference).abs().max() <= 1e-4 * reference.abs().max()
    assert all(torch.equal(a, b) for a, b in zip(cached.tokens, uncached.tokens, strict=True))


def test_a_hook_returning_none_only_observes(tiny, prompts):
    seen = []
    gen = generate(
        tiny, prompts, 3, interventions=[Hook("blocks.0.attn.hook_z", lambda z, site: seen.append(site))],
        stop_at_eos=False, return_logits=True,
    )  # fmt: skip
    plain = generate(tiny, prompts, 3, stop_at_eos=False, return_logits=True)
    assert torch.equal(step_logits(gen), step_logits(plain))
    # the prompt in one call, then one new position per step (the last token chosen is not run)
    assert [(s.start, s.n) for s in seen] == [(0, 6), (6, 1), (7, 1)]


def test_aliases_name_the_same_point(tiny, prompts):
    a = generate(tiny, prompts, 3, interventions=[Hook("blocks.1.hook_in", wobble)], return_logits=True)
    b = generate(
        tiny, prompts, 3, interventions=[Hook("blocks.1.hook_resid_pre", wobble)], return_logits=True
    )
    assert torch.equal(step_logits(a), step_logits(b))


class TestPatchFrom:
    def test_patching_heads_from_another_runs_cache_equals_a_patching_hook(self, tiny, prompts):
        corrupted = torch.randint(5, 300, (2, 6), generator=torch.Generator().manual_seed(5))
        name = "blocks.0.attn.hook_z"
        _, cache = tiny.run_with_cache(corrupted)
        source = cache[name]
        gen = generate(
            tiny, prompts, N_NEW, interventions=[Patch(name, source, "prompt", heads=[1])],
            stop_at_eos=False, return_logits=True,
        )  # fmt: skip
        n_prompt = prompts.shape[1]

        def patch(z, hook):
            z = z.clone()
            z[:, :n_prompt, 1] = source[:, :, 1]
            return z

        reference = tiny.run_with_hooks(torch.stack(gen.tokens), fwd_hooks=[(name, patch)])
        assert (step_logits(gen) - reference[:, n_prompt - 1 : -1]).abs().max() <= 1e-4
        plain = generate(tiny, prompts, N_NEW, stop_at_eos=False, return_logits=True)
        assert (step_logits(gen) - step_logits(plain)).abs().max() > 1e-3

    def test_a_pattern_patch_covers_the_sources_positions_only(self, tiny, prompts):
        """A prompt-length pattern patched in at "all": generated positions are left alone."""
        corrupted = torch.randint(5, 300, (1, 6), generator=torch.Generator().manual_seed(6))
        name = "blocks.1.attn.hook_pattern"
        _, cache = tiny.run_with_cache(corrupted)
        source = cache[name][0]  # without the batch axis: every prompt gets it
        gen = generate(tiny, prompts, N_NEW, interventions=[Patch(name, source)], stop_at_eos=False,
                       return_logits=True)  # fmt: skip
        n = source.shape[-1]

        def patch(pattern, hook):
            pattern = pattern.clone()
            pattern[:, :, :n, :n] = source
            return pattern

        reference = tiny.run_with_hooks(torch.stack(gen.tokens), fwd_hooks=[(name, patch)])
        assert (step_logits(gen) - reference[:, prompts.shape[1] - 1 : -1]).abs().max() <= 1e-4

    def test_bad_sources_are_refused_with_the_layout(self, tiny, prompts):
        name = "blocks.0.attn.hook_z"
        with pytest.raises(InputError, match="batch pos head d_head"):
            generate(tiny, prompts, 2, interventions=[Patch(name, torch.zeros(6, 80))])
        with pytest.raises(InputError, match="batch of 3"):
            generate(tiny, prompts, 2, interventions=[Patch(name, torch.zeros(3, 6, 2, 40))])
        with pytest.raises(InputError, match=r"shape \(1, 6, 3, 40\); .* = \(batch, pos, 2, 40\)"):
            generate(tiny, prompts, 2, interventions=[Patch(name, torch.zeros(1, 6, 3, 40))])
        with pytest.raises(InputError, match="no head axis"):
            generate(
                tiny,
                prompts,
                2,
                interventions=[Patch("blocks.0.hook_resid_pre", torch.zeros(6, 80), heads=[0])],
            )


def test_activations_kept_while_generating_equal_run_with_cache(tiny, prompts):
    names = [n for n in points(2) if n != "hook_embed"] + ["hook_embed"]
    gen = generate(tiny, prompts, N_NEW, keep=names, stop_at_eos=False)
    _, cache = tiny.run_with_cache(torch.stack(gen.tokens))
    for name in names:
        for i in range(len(prompts)):
            ours, theirs = gen.activations[name][i], cache[name][i]
            assert ours.shape == theirs.shape, name
            assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), name


def test_kept_activations_reflect_the_interventions(tiny, prompts):
    gen = generate(tiny, prompts, 3, keep=["blocks.1.attn.hook_z"], interventions=[AblateHeads([(1, 0)])])
    for z in gen.activations["blocks.1.attn.hook_z"]:
        assert torch.count_nonzero(z[:, 0]) == 0 and torch.count_nonzero(z[:, 1]) > 0
    assert head_axis("blocks.1.attn.hook_z") == 2


class TestRefusals:
    def test_unknown_hook_names_suggest_close_matches(self, tiny, prompts):
        with pytest.raises(HookNameError, match="Did you mean: blocks.0.attn.hook_z"):
            generate(tiny, prompts, 2, interventions=[Hook("blocks.0.attn.hook_zz", wobble)])
        with pytest.raises(HookNameError, match="layers 0..1"):
            generate(tiny, prompts, 2, keep=["blocks.7.hook_resid_pre"])

    def test_points_generation_does_not_offer_are_named_with_what_is(self, tiny, prompts):
        with pytest.raises(
            InputError, match=r"'blocks.0.ln1.hook_scale' cannot be used while generating.*hook_z"
        ):
            generate(tiny, prompts, 2, interventions=[Hook("blocks.0.ln1.hook_scale", wobble)])

    def test_a_hook_must_keep_the_shape(self, tiny, prompts):
        with pytest.raises(InputError, match=r"returned \(2, 6, 40\).*shape \(2, 6, 2, 40\)"):
            generate(
                tiny, prompts, 2, interventions=[Hook("blocks.0.attn.hook_z", lambda z, site: z[:, :, 0])]
            )

    def test_bad_positions(self, tiny, prompts):
        with pytest.raises(InputError, match="integers >= 0"):
            generate(tiny, prompts, 2, interventions=[Hook("blocks.0.attn.hook_z", wobble, [-1])])


def test_steering_at_listed_positions_equals_adding_the_vector_there_with_transformer_lens(tiny, prompts):
    """Steer's token positions (ActAdd-style `token_indices`): the vector goes in at those absolute
    positions only, prompt or generated, as a TransformerLens hook adding it there."""
    vector = torch.randn(tiny.cfg.d_model, generator=torch.Generator().manual_seed(8))
    gen = generate(
        tiny,
        prompts,
        N_NEW,
        interventions=[Steer(1, vector, 2.0, [2, 7])],
        stop_at_eos=False,
        return_logits=True,
    )

    def add(resid, hook):
        resid = resid.clone()
        resid[:, [2, 7]] += 2.0 * vector
        return resid

    reference = tiny.run_with_hooks(torch.stack(gen.tokens), fwd_hooks=[("blocks.1.hook_resid_pre", add)])
    assert (step_logits(gen) - reference[:, prompts.shape[1] - 1 : -1]).abs().max() <= 1e-4


class TestReferenceValues:
    """The ablated values `Ablate` and circuit evaluation share: a pooled mean, zeros, or the reference."""

    def test_the_mean_pools_every_position_of_every_part(self):
        generator = torch.Generator().manual_seed(0)
        parts = [torch.randn(3, 5, 4, generator=generator), torch.randn(2, 9, 4, generator=generator)]
        flat = torch.cat([p.reshape(-1, 4) for p in parts])  # every (prompt, position) once
        assert torch.allclose(reference_mean(parts)[0, 0], flat.mean(0), atol=1e-6)
        assert reference_mean(parts).shape == (1, 1, 4)
        moved = [p.permute(2, 0, 1) for p in parts]  # d batch pos: the axes given
        assert torch.allclose(reference_mean(moved, axes=(1, 2))[:, 0, 0], flat.mean(0), atol=1e-6)

    def test_each_method_in_each_parts_shape(self):
        parts = [torch.arange(24.0).reshape(2, 3, 4), torch.ones(1, 2, 4)]
        zero, mean, counterfactual = (ablation_values(m, parts) for m in ("zero", "mean", "counterfactual"))
        assert [z.shape for z in zero] == [p.shape for p in parts] and all((z == 0).all() for z in zero)
        expected = (parts[0].sum((0, 1)) + parts[1].sum((0, 1))) / 8
        assert all(
            m.shape == p.shape and torch.allclose(m, expected.expand_as(p))
            for m, p in zip(mean, parts, strict=True)
        )
        assert all(c is p for c, p in zip(counterfactual, parts, strict=True))
        with pytest.raises(InputError, match="method='resample' is not allowed"):
            ablation_values("resample", parts)
