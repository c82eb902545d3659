"""One entry point for interventions (interp.methods.hooked_run): for every intervention kind, the
engine target and the bridge target give equal logits, both equal to TransformerLens's own
`run_with_hooks` with the hook written by hand, on a tiny random Phi and on the trained toy; each target
refuses by name what only the other computes; bad interventions are refused naming what is allowed."""

from __future__ import annotations

import einops
import pytest
import torch
from closeness import assert_close

from interp.base.errors import HookNameError, InputError
from interp.methods.hooked_run import run_with_interventions
from interp.methods.interventions import (
    Ablate,
    AblateHeads,
    Component,
    Hook,
    Patch,
    Steer,
    permutation,
)
from interp.model.hooks import active_hook_count
from interp.model.loading import load_model

TARGETS = ("engine", "bridge")


@pytest.fixture(scope="module")
def tiny(tiny_phi_dir):
    return load_model(tiny_phi_dir)


@pytest.fixture(params=["tiny", "toy"])
def model(request, tiny, toy_model):
    return tiny if request.param == "tiny" else toy_model


def tokens_for(model, seed: int) -> torch.Tensor:
    high = min(300, model.cfg.d_vocab)
    return torch.randint(3, high, (2, 7), generator=torch.Generator().manual_seed(seed))


def wobble(act: torch.Tensor, site) -> torch.Tensor:
    """A position-dependent change (a scale alone would vanish in a LayerNorm)."""
    return act * 0.8 + 0.1 * torch.cos(torch.arange(act.shape[-1], dtype=act.dtype))


def reference(model, tokens, hooks):
    """TransformerLens's `run_with_hooks`, the hooks written by hand."""
    return model.run_with_hooks(tokens, fwd_hooks=hooks)


def case(name: str, model, tokens, other):
    """(interventions, hand-written TransformerLens hooks) for one intervention kind."""
    cfg = model.cfg
    last = cfg.n_layers - 1
    _, cache = model.run_with_cache(other)
    if name == "ablate_head_zero":

        def hook(z, hook):
            z = z.clone()
            z[:, :, 1] = 0
            return z

        return [Ablate(Component("head", last, 1))], [(f"blocks.{last}.attn.hook_z", hook)]
    if name == "ablate_mlp_mean":
        point = "blocks.0.hook_mlp_out"
        mean = cache[point].mean(dim=(0, 1))
        return [Ablate(Component("mlp", 0), "mean", reference=other)], [
            (point, lambda act, hook: mean.expand_as(act).clone())
        ]
    if name == "ablate_neuron_resample":
        point = f"blocks.{last}.mlp.hook_post"
        rows = permutation(2, 3)

        def hook(act, hook):
            act = act.clone()
            act[..., 5] = cache[point][rows, :, 5]
            return act

        return [Ablate(Component("neuron", last, 5), "resample", reference=other, seed=3)], [(point, hook)]
    if name == "ablate_attn_counterfactual_at_positions":
        point = "blocks.0.hook_attn_out"

        def hook(act, hook):
            act = act.clone()
            act[:, [2, 5]] = cache[point][:, [2, 5]]
            return act

        ablation = Ablate(Component("attn", 0), "counterfactual", reference=other, positions=[2, 5])
        return [ablation], [(point, hook)]
    if name == "ablate_pattern_counterfactual":
        point = f"blocks.{last}.attn.hook_pattern"
        return [Ablate(point, "counterfactual", reference=other)], [
            (point, lambda act, hook: cache[point].clone())
        ]
    if name == "patch_heads_at_positions":
        point = "blocks.0.attn.hook_z"

        def hook(z, hook):
            z = z.clone()
            z[:, [1, 3], 1] = cache[point][:, [1, 3], 1]
            return z

        return [Patch(point, cache[point], positions=[1, 3], heads=[1])], [(point, hook)]
    if name == "patch_resid_one_prompt_source":
        point = f"blocks.{last}.hook_resid_pre"
        source = cache[point][1]  # no batch axis: every prompt gets it
        return [Patch(point, source)], [(point, lambda act, hook: source.expand_as(act).clone())]
    if name == "steer":
        vector = torch.randn(cfg.d_model, generator=torch.Generator().manual_seed(5))

        def hook(act, hook):
            act = act.clone()
            act[:, [0, 4]] += 2.0 * vector
            return act

        return [Steer(1, vector, 2.0, positions=[0, 4])], [("blocks.1.hook_resid_pre", hook)]
    if name == "steer_final_residual":
        vector = torch.randn(cfg.d_model, generator=torch.Generator().manual_seed(6))
        return [Steer(cfg.n_layers, vector, -1.5)], [
            (f"blocks.{last}.hook_resid_post", lambda act, hook: act + -1.5 * vector)
        ]
    if name == "ablate_heads":

        def hook(z, hook):
            z = z.clone()
            z[:, :, 0] = 0
            return z

        return [AblateHeads([(0, 0), (last, 0)])], [
            ("blocks.0.attn.hook_z", hook),
            (f"blocks.{last}.attn.hook_z", hook),
        ]
    if name == "hook_mlp_post_prompt":
        point = "blocks.0.mlp.hook_post"
        return [Hook(point, wobble, "prompt")], [(point, lambda act, hook: wobble(act, None))]
    if name == "hook_ln1_scale":
        point = f"blocks.{last}.ln1.hook_scale"
        return [Hook(point, lambda act, site: act * 1.7)], [(point, lambda act, hook: act * 1.7)]
    if name == "all_at_once":
        items, hooks = [], []
        for part in ("ablate_mlp_mean", "patch_heads_at_positions", "steer", "hook_mlp_post_prompt"):
            more, refs = case(part, model, tokens, other)
            items += more
            hooks += refs
        return items, hooks
    raise KeyError(name)


CASES = [
    "ablate_head_zero",
    "ablate_mlp_mean",
    "ablate_neuron_resample",
    "ablate_attn_counterfactual_at_positions",
    "ablate_pattern_counterfactual",
    "patch_heads_at_positions",
    "patch_resid_one_prompt_source",
    "steer",
    "steer_final_residual",
    "ablate_heads",
    "hook_mlp_post_prompt",
    "hook_ln1_scale",
    "all_at_once",
]


class TestBothTargetsEqualTransformerLens:
    @pytest.mark.parametrize("name", CASES)
    def test_each_intervention_kind(self, model, name):
        tokens, other = tokens_for(model, 1), tokens_for(model, 2)
        interventions, hooks = case(name, model, tokens, other)
        expected = reference(model, tokens, hooks)
        plain = model(tokens)
        for target in TARGETS:
            got = run_with_interventions(model, tokens, interventions, target=target)
            assert_close(got, expected, what=target)
            assert (got - plain).abs().max() > 1e-3, target  # the intervention does something
        assert active_hook_count(model) == 0

    def test_attn_result_is_computed_and_the_setting_restored(self, tiny):
        tokens = tokens_for(tiny, 1)
        point = "blocks.1.attn.hook_result"
        tiny.set_use_attn_result(True)
        try:
            expected = reference(tiny, tokens, [(point, lambda act, hook: wobble(act, None))])
        finally:
            tiny.set_use_attn_result(False)
        for target in TARGETS:
            assert_close(run_with_interventions(tiny, tokens, [Hook(point, wobble)], target), expected)
        assert not tiny.cfg.use_attn_result


class TestPatchingHeadsOfASplitReceiverInput:
    """`Patch(heads=...)` at `hook_q_input` / `hook_k_input` / `hook_v_input` (each head's own copy of
    the residual it reads): patching head h's copy from another run's residual at some positions gives
    that head the other run's query / key / value there and changes nothing else, which on the bridge is
    a hand-written hook on `attn.hook_q` / `hook_k` / `hook_v` (same LayerNorm, same weights)."""

    @pytest.mark.parametrize("part", ["q", "k", "v"])
    def test_equals_patching_that_heads_q_k_or_v_on_the_bridge(self, model, part):
        tokens, other = tokens_for(model, 1), tokens_for(model, 2)
        layer, heads, positions = model.cfg.n_layers - 1, [1], [2, 5]
        _, cache = model.run_with_cache(other)
        source = einops.repeat(
            cache[f"blocks.{layer}.hook_resid_pre"], "batch pos d_model -> batch pos head d_model",
            head=model.cfg.n_heads,
        )  # fmt: skip
        point = f"blocks.{layer}.attn.hook_{part}"

        def hook(act, hook):  # batch pos head d_head
            act = act.clone()
            act[:, positions, 1] = cache[point][:, positions, 1]
            return act

        expected = reference(model, tokens, [(point, hook)])
        item = Patch(f"blocks.{layer}.hook_{part}_input", source, positions=positions, heads=heads)
        got = run_with_interventions(model, tokens, [item], target="engine")
        assert_close(got, expected)
        assert (got - model(tokens)).abs().max() > 1e-3  # the patch does something

    def test_every_head_patched_equals_patching_the_residual_for_that_receiver(self, tiny):
        tokens, other = tokens_for(tiny, 1), tokens_for(tiny, 2)
        _, cache = tiny.run_with_cache(other)
        resid = cache["blocks.1.hook_resid_pre"]
        source = einops.repeat(resid, "batch pos d_model -> batch pos head d_model", head=tiny.cfg.n_heads)
        every = [Patch("blocks.1.hook_v_input", source, heads=list(range(tiny.cfg.n_heads)))]
        whole = [Patch("blocks.1.hook_v_input", source)]
        assert_close(run_with_interventions(tiny, tokens, every), run_with_interventions(tiny, tokens, whole))

    def test_a_split_input_without_a_head_axis_is_refused_naming_its_layout(self, tiny):
        source = torch.zeros(7, tiny.cfg.d_model)
        with pytest.raises(
            InputError, match=r"blocks.0.hook_mlp_in \(batch pos d_model\) has no head axis.*hook_q_input"
        ):
            run_with_interventions(
                tiny, tokens_for(tiny, 1), [Patch("blocks.0.hook_mlp_in", source, heads=[0])]
            )


class TestEachTargetRefusesWhatOnlyTheOtherComputes:
    def test_engine_refuses_a_bridge_only_point_by_name(self, tiny):
        tokens = tokens_for(tiny, 1)
        point = "ln_final.hook_scale"
        with pytest.raises(InputError, match=r"'ln_final.hook_scale' is the bridge's only.*target='bridge'"):
            run_with_interventions(tiny, tokens, [Hook(point, lambda act, site: act * 2)], "engine")
        got = run_with_interventions(tiny, tokens, [Hook(point, lambda act, site: act * 2)], "bridge")
        assert_close(got, reference(tiny, tokens, [(point, lambda act, hook: act * 2)]))

    def test_bridge_refuses_a_split_receiver_input_by_name(self, tiny):
        tokens = tokens_for(tiny, 1)
        item = Hook("blocks.1.hook_q_input", wobble)
        with pytest.raises(InputError, match=r"split receiver input.*target='engine'"):
            run_with_interventions(tiny, tokens, [item], "bridge")
        changed = run_with_interventions(tiny, tokens, [item], "engine")
        assert (changed - tiny(tokens)).abs().max() > 1e-3


class TestBadInputIsRefused:
    def test_unknown_hook_names_close_matches(self, tiny):
        for target in TARGETS:
            with pytest.raises(HookNameError, match="Did you mean: blocks.0.attn.hook_z"):
                run_with_interventions(
                    tiny, tokens_for(tiny, 1), [Hook("blocks.0.attn.hook_zz", wobble)], target
                )

    def test_positions_out_of_range(self, tiny):
        with pytest.raises(InputError, match=r"positions \[9\] are outside the prompts' positions 0 .. 6"):
            run_with_interventions(
                tiny, tokens_for(tiny, 1), [Hook("blocks.0.hook_resid_pre", wobble, [1, 9])]
            )
        with pytest.raises(InputError, match="generates nothing"):
            run_with_interventions(
                tiny, tokens_for(tiny, 1), [Hook("blocks.0.hook_resid_pre", wobble, "generated")]
            )

    def test_heads_on_a_point_without_a_head_axis(self, tiny):
        source = torch.zeros(7, tiny.cfg.d_model)
        with pytest.raises(InputError, match=r"no head axis.*hook_z"):
            run_with_interventions(
                tiny, tokens_for(tiny, 1), [Patch("blocks.0.hook_resid_pre", source, heads=[0])]
            )

    def test_methods_a_target_cannot_give(self, tiny):
        tokens, other = tokens_for(tiny, 1), tokens_for(tiny, 2)
        unknown = Ablate(Component("mlp", 0))
        unknown.method = "median"  # past the annotation (as from a config file)
        with pytest.raises(InputError, match=r"method='median' is not allowed; use one of 'zero', 'mean'"):
            run_with_interventions(tiny, tokens, [unknown])
        for target in TARGETS:
            with pytest.raises(
                InputError, match=r"mean ablation at blocks.0.attn.hook_pattern.*'zero', 'resample'"
            ):
                run_with_interventions(
                    tiny, tokens, [Ablate("blocks.0.attn.hook_pattern", "mean", other)], target
                )
        with pytest.raises(InputError, match="needs reference token ids"):
            run_with_interventions(tiny, tokens, [Ablate(Component("mlp", 0), "resample")])
        with pytest.raises(InputError, match="one reference prompt per prompt"):
            run_with_interventions(tiny, tokens, [Ablate(Component("mlp", 0), "counterfactual", other[:1])])
        with pytest.raises(InputError, match=r"a head needs index in 0..1"):
            run_with_interventions(tiny, tokens, [Ablate(Component("head", 0, 2))])

    def test_a_patch_without_source_names_where_one_comes_from(self, tiny):
        with pytest.raises(InputError, match="needs a tensor source"):
            run_with_interventions(tiny, tokens_for(tiny, 1), [Patch("blocks.0.hook_resid_pre")])

    def test_hooks_are_removed_when_a_hook_raises(self, tiny):
        def broken(act, site):
            raise RuntimeError("hook failed")

        with pytest.raises(RuntimeError, match="hook failed"):
            run_with_interventions(
                tiny, tokens_for(tiny, 1), [Hook("blocks.0.hook_resid_pre", broken)], "bridge"
            )
        assert active_hook_count(tiny) == 0


def test_the_engine_target_on_given_weights_and_at_the_final_position(model):
    """run_on_engine is run_with_interventions(target='engine') on weights built once; final_only its
    final position, through the same edits (a steer at the final residual, a patched unembedding)."""
    from interp.engine.forward import PhiWeights
    from interp.methods.hooked_run import run_on_engine

    tokens, other = tokens_for(model, 0), tokens_for(model, 1)
    vector = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    items = [
        Steer(model.cfg.n_layers, vector, 2.0),
        Ablate(Component("head", 0, 1), "mean", reference=other),
    ]
    w = PhiWeights.from_model(model)
    every = run_with_interventions(model, tokens, items)
    assert torch.equal(run_on_engine(model, w, tokens, items), every)
    final = run_on_engine(model, w, tokens, items, final_only=True)
    assert final.shape == (tokens.shape[0], every.shape[-1])
    assert torch.allclose(final, every[:, -1], atol=1e-5)
    assert (final - run_on_engine(model, w, tokens, [], final_only=True)).abs().max() > 1e-3
