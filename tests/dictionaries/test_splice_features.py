"""Feature steering and exact latent patching, each against a hand-written TransformerLens hook."""

from __future__ import annotations

import pytest
import torch
from helpers import ioi_pairs
from jaxtyping import TypeCheckError

from interp.base.errors import InputError
from interp.dictionaries.splice import splice
from interp.methods.features.interventions import FeatureSteer, LatentPatch
from interp.methods.features.patching import patch_latents
from interp.methods.generation import generate

from .test_splice import close, make_dict, tokens_for


def busy_latent(model, d, tokens) -> int:
    """The latent that fires most often on `tokens`."""
    with torch.no_grad():
        x = model.run_with_cache(tokens, names_filter=d.hook_name)[1][d.hook_name]
        return int(d.encode(x).gt(0).float().mean((0, 1)).argmax())


def hand_latent_hooks(d, change, error: bool, state=None):
    """Hooks that encode by hand, let `change(acts)` edit the latents, and write what the spliced model
    writes: activation + decode(edited) - decode(acts) (error term) or the reconstruction from them."""
    state = {} if state is None else state

    def output(act, x):
        acts = d.encode(x)
        edited = change(acts)
        skip = d.skip(x) if d.W_skip is not None else 0
        out = act + d.decode(edited) - d.decode(acts) if error else d.decode(edited) + skip
        return out.to(act.dtype)

    if d.kind == "sae":
        return [(d.hook_name, lambda act, hook: output(act, act))]

    def read(act, hook):
        state["x"] = act

    return [(d.hook_name, read), (d.hook_name_out, lambda act, hook: output(act, state.pop("x")))]


def set_latent(latent, value, positions=None):
    def change(acts):
        acts = acts.clone()
        if positions is None:
            acts[..., latent] = value
        else:
            acts[:, positions, latent] = value
        return acts

    return change


class TestFeatureSteer:
    @pytest.mark.parametrize("kind", ["sae", "skip_transcoder"])
    def test_add_is_the_decoder_direction_spliced_or_not(self, toy_model, kind):
        tokens = tokens_for(toy_model)
        d = make_dict(toy_model, kind)
        latent = busy_latent(toy_model, d, tokens)
        steer = FeatureSteer(d, latent, 4.0)
        direction = d.W_dec[latent].detach()
        with torch.no_grad():
            reference = toy_model.run_with_hooks(
                tokens, fwd_hooks=[(d.hook_name_out, lambda act, hook: act + 4.0 * direction)]
            )
            plain = toy_model.run_with_hooks(tokens, fwd_hooks=[steer.fwd_hook()])
            with splice(toy_model, d) as spliced:
                spliced_add = toy_model.run_with_hooks(tokens, fwd_hooks=[steer.fwd_hook()])

                def plus(acts, hook):
                    acts = acts.clone()
                    acts[..., latent] += 4.0
                    return acts

                through_latent = toy_model.run_with_hooks(tokens, fwd_hooks=[(spliced.name(d), plus)])
        close(plain, reference)
        close(spliced_add, reference)
        close(through_latent, reference)
        with torch.no_grad():
            assert float((reference - toy_model(tokens)).abs().max()) > 1e-2

    @pytest.mark.parametrize("kind", ["sae", "transcoder", "skip_transcoder"])
    @pytest.mark.parametrize("error", [True, False])
    def test_clamp_sets_the_latent_in_the_spliced_model(self, toy_model, kind, error):
        tokens = tokens_for(toy_model)
        d = make_dict(toy_model, kind)
        latent = busy_latent(toy_model, d, tokens)
        with torch.no_grad():
            reference = toy_model.run_with_hooks(
                tokens, fwd_hooks=hand_latent_hooks(d, set_latent(latent, 0.0), error)
            )
            with splice(toy_model, d, error=error):
                clamped = toy_model.run_with_hooks(
                    tokens, fwd_hooks=[FeatureSteer(d, latent, 0.0, "clamp").fwd_hook()]
                )
                listed = toy_model.run_with_hooks(
                    tokens, fwd_hooks=[FeatureSteer(d, latent, 0.0, "clamp", positions=[3, 5]).fwd_hook()]
                )
            part = toy_model.run_with_hooks(
                tokens, fwd_hooks=hand_latent_hooks(d, set_latent(latent, 0.0, [3, 5]), error)
            )
        close(clamped, reference)
        close(listed, part)
        assert float((part - reference).abs().max()) > 1e-4  # positions matter

    @pytest.mark.parametrize("kind", ["sae", "transcoder"])
    @pytest.mark.parametrize("mode", ["add", "clamp"])
    def test_in_generate_equal_to_a_hand_written_greedy_loop(self, toy_model, kind, mode):
        prompt = tokens_for(toy_model, seed=3, shape=(1, 5))
        d = make_dict(toy_model, kind)
        latent = busy_latent(toy_model, d, prompt)
        value = 6.0
        n_prompt = prompt.shape[1]

        def hooks(sequence):
            generated = list(range(n_prompt, sequence.shape[1]))
            if mode == "clamp":
                return hand_latent_hooks(d, set_latent(latent, value, generated), error=True)
            direction = d.W_dec[latent].detach()

            def add(act, hook):
                act = act.clone()
                act[:, generated] += value * direction
                return act

            return [(d.hook_name_out, add)]

        sequence, reference = prompt, []
        with torch.no_grad():
            for _ in range(4):
                logits = toy_model.run_with_hooks(sequence, fwd_hooks=hooks(sequence))[:, -1]
                reference.append(logits[0])
                sequence = torch.cat([sequence, logits.argmax(-1, keepdim=True)], dim=1)
        steer = FeatureSteer(d, latent, value, mode, positions="generated")
        with splice(toy_model, d):
            out = generate(
                toy_model, prompt, 4, interventions=[steer.to_hook()], stop_at_eos=False, return_logits=True
            )
        unsteered = generate(toy_model, prompt, 4, stop_at_eos=False, return_logits=True)
        assert torch.equal(out.tokens[0], sequence[0])
        close(out.step_logits[0], torch.stack(reference))
        assert float((out.step_logits[0][1:] - unsteered.step_logits[0][1:]).abs().max()) > 1e-3

    def test_refusals(self, toy_model):
        d = make_dict(toy_model, "sae")
        with pytest.raises(InputError, match="splice"):
            FeatureSteer(d, 0, 1.0, "clamp").hook_name()
        with pytest.raises(InputError, match=r"latents 0\.\.95"):
            FeatureSteer(d, 96, 1.0)
        with pytest.raises((InputError, TypeCheckError), match="mode|SteerMode|Literal"):
            FeatureSteer(d, 0, 1.0, "set")
        with pytest.raises(InputError, match="finite"):
            FeatureSteer(d, 0, float("nan"))
        with pytest.raises(InputError, match="for generate"):
            FeatureSteer(d, 0, 1.0, positions="generated").fwd_hook()


class TestPatchLatents:
    @pytest.mark.parametrize("error", [True, False])
    @pytest.mark.parametrize("direction", ["denoising", "noising"])
    def test_equals_a_hand_written_patch(self, toy_model, error, direction):
        pairs = ioi_pairs(toy_model.tokenizer, 4)
        d = make_dict(toy_model, "sae", layer=2)
        clean, corrupted = pairs.clean_tokens, pairs.corrupted_tokens
        base, source = (corrupted, clean) if direction == "denoising" else (clean, corrupted)
        latents, positions = [1, 7, 30, 64], [2, clean.shape[1] - 1]
        rows = torch.arange(len(pairs))
        with torch.no_grad():
            source_acts = d.encode(toy_model.run_with_cache(source, names_filter=d.hook_name)[1][d.hook_name])

            def change(acts):
                out = acts.clone()
                for pos in positions:
                    out[:, pos, latents] = source_acts[:, pos, latents]
                return out

            logits = toy_model.run_with_hooks(base, fwd_hooks=hand_latent_hooks(d, change, error))[:, -1]
            reference = logits[rows, pairs.answer] - logits[rows, pairs.wrong]
            got = patch_latents(
                toy_model, pairs, [LatentPatch(d, latents, positions)], direction=direction, error=error
            )
            nothing = patch_latents(
                toy_model, pairs, [LatentPatch(d, latents, [0])], direction=direction, error=error
            )
        close(got, reference)
        assert float((got - nothing).abs().max()) > 1e-4

    def test_a_live_splice_is_used_and_patching_no_position_is_the_base_run(self, toy_model):
        pairs = ioi_pairs(toy_model.tokenizer, 3)
        sae = make_dict(toy_model, "sae", layer=1)
        tc = make_dict(toy_model, "transcoder", layer=2)
        with torch.no_grad():
            base_metric = patch_latents(
                toy_model, pairs, [LatentPatch(sae, positions=[]), LatentPatch(tc, positions=[])]
            )
            with splice(toy_model, [sae, tc]):
                inside = patch_latents(toy_model, pairs, [LatentPatch(sae, [3]), LatentPatch(tc, [5])])
            outside = patch_latents(toy_model, pairs, [LatentPatch(sae, [3]), LatentPatch(tc, [5])])
            rows = torch.arange(len(pairs))
            logits = toy_model(pairs.corrupted_tokens)[:, -1]
        close(inside, outside)
        # patching no position is the base run itself (the error term makes the splice exact)
        close(base_metric, logits[rows, pairs.answer] - logits[rows, pairs.wrong])

    def test_refusals(self, toy_model, tiny_phi_dir):
        pairs = ioi_pairs(toy_model.tokenizer, 2)
        sae, other = make_dict(toy_model, "sae"), make_dict(toy_model, "sae", layer=2)
        with pytest.raises(InputError, match="non-empty list"):
            patch_latents(toy_model, pairs, [])
        with pytest.raises(InputError, match="positions"):
            patch_latents(toy_model, pairs, [LatentPatch(sae, [0], [99])])
        with pytest.raises(InputError, match="latents"):
            LatentPatch(sae, [-1])
        with splice(toy_model, sae):
            with pytest.raises(InputError, match="not in the model's splice"):
                patch_latents(toy_model, pairs, [LatentPatch(other, [0])])
            with pytest.raises(InputError, match="error=False"):
                patch_latents(toy_model, pairs, [LatentPatch(sae, [0])], error=False)

    def test_the_vocabularys_patch_on_latents_agrees(self, toy_model):
        from interp.methods.interventions import Patch
        from interp.methods.joint_patching import run_patched

        pairs = ioi_pairs(toy_model.tokenizer, 3)
        sae = make_dict(toy_model, "sae", layer=1)
        with torch.no_grad(), splice(toy_model, sae) as spliced:
            joint = run_patched(toy_model, pairs, [Patch(spliced.name(sae), positions=[2, 4])])
            latents = patch_latents(toy_model, pairs, [LatentPatch(sae, positions=[2, 4])])
        close(latents, joint)
