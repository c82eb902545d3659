"""Splicing dictionaries into the model: exact with the error term, equal to a hand-written hook without
it, on the bridge, in the engine and in generation; dictionary hook points; clean exit; refusals."""

from __future__ import annotations

import pytest
import torch
from jaxtyping import TypeCheckError

from interp.base.errors import HookNameError, InputError
from interp.dictionaries import make_dictionary
from interp.dictionaries.splice import splice
from interp.engine import hook_points, splicing
from interp.engine.edits import Keep, Replace, check_points
from interp.engine.forward import PhiWeights, forward, forward_logits, run_final_logits
from interp.methods.generation import generate
from interp.model.hooks import active_hook_count, validate_hook_names
from interp.model.loading import load_model

KINDS = ("sae", "transcoder", "skip_transcoder")


@pytest.fixture(scope="module")
def tiny_phi(tiny_phi_dir):
    return load_model(str(tiny_phi_dir))


@pytest.fixture(scope="module")
def toy_bf16():
    return load_model("toy", dtype="bfloat16")


@pytest.fixture(params=["toy", "tiny_phi"])
def model(request, toy_model):
    return toy_model if request.param == "toy" else request.getfixturevalue("tiny_phi")


def make_dict(model, kind: str, layer: int = 1, seed: int = 0, architecture: str = "topk"):
    """A random dictionary whose latents fire (shifted encoder bias), on a middle block of `model`."""
    d_model = model.cfg.d_model
    options = {"k": 6} if architecture == "topk" else {}
    if kind == "sae":
        d = make_dictionary(
            architecture,
            d_in=d_model,
            d_sae=96,
            hook_name=f"blocks.{layer}.hook_resid_pre",
            seed=seed,
            **options,
        )
    else:
        d = make_dictionary(
            architecture,
            d_in=d_model,
            d_sae=96,
            kind=kind,
            hook_name=f"blocks.{layer}.ln1.hook_normalized",
            hook_name_out=f"blocks.{layer}.hook_mlp_out",
            seed=seed,
            **options,
        )
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        d.b_enc.copy_(0.5 + 0.1 * torch.randn(d.d_sae, generator=generator))
        d.b_dec.copy_(0.1 * torch.randn(d.d_out, generator=generator))
        if d.W_skip is not None:
            d.W_skip.copy_(0.05 * torch.randn(d.d_out, d.d_in, generator=generator))
    return d


def tokens_for(model, seed: int = 0, shape=(2, 9)):
    return torch.randint(0, model.cfg.d_vocab, shape, generator=torch.Generator().manual_seed(seed))


def hand_hooks(d, state=None):
    """TransformerLens-style hooks substituting the dictionary's output by hand (the reference)."""
    if d.kind == "sae":
        return [(d.hook_name, lambda act, hook: d(act).to(act.dtype))]
    state = {} if state is None else state

    def read(act, hook):
        state["x"] = act

    return [(d.hook_name, read), (d.hook_name_out, lambda act, hook: d(state.pop("x")).to(act.dtype))]


def close(a, b):
    scale = float(b.abs().max())
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * scale)


class TestErrorTermIsExact:
    @pytest.mark.parametrize("kind", KINDS)
    def test_bridge_and_engine_logits_are_the_unspliced_ones(self, model, kind):
        tokens = tokens_for(model)
        d = make_dict(model, kind)
        w = PhiWeights.from_model(model)
        with torch.no_grad():
            clean, clean_cache = model.run_with_cache(tokens)
            clean_all, clean_last = forward_logits(w, tokens), run_final_logits(w, tokens)
            with splice(model, d, error=True):
                spliced, cache = model.run_with_cache(tokens)
                hooked = model.run_with_hooks(tokens, fwd_hooks=[(d.hook_name, lambda a, hook: None)])
                w = PhiWeights.from_model(model)
                assert w.splice is not None
                engine_all, engine_last = forward_logits(w, tokens), run_final_logits(w, tokens)
        for got in (spliced, hooked, model(tokens)):
            assert torch.equal(got, clean)
        assert torch.equal(engine_all, clean_all)
        # the last-position-only path is not bitwise reproducible across PhiWeights objects, spliced or not
        torch.testing.assert_close(engine_last, clean_last, rtol=0, atol=1e-6 * float(clean_last.abs().max()))
        assert torch.equal(cache["blocks.1.hook_resid_post"], clean_cache["blocks.1.hook_resid_post"])

    @pytest.mark.parametrize("kind", KINDS)
    def test_generation_is_the_unspliced_one(self, model, kind):
        tokens = tokens_for(model, shape=(2, 5))
        d = make_dict(model, kind)
        clean = generate(model, tokens, 4, stop_at_eos=False, return_logits=True)
        with splice(model, d, error=True):
            spliced = generate(model, tokens, 4, stop_at_eos=False, return_logits=True)
        for a, b in zip(spliced.step_logits, clean.step_logits, strict=True):
            assert torch.equal(a, b)
        for a, b in zip(spliced.tokens, clean.tokens, strict=True):
            assert torch.equal(a, b)

    @pytest.mark.parametrize("kind", ["sae", "skip_transcoder"])
    def test_a_bfloat16_model_with_float32_dictionaries(self, toy_bf16, kind):
        tokens = tokens_for(toy_bf16)
        d = make_dict(toy_bf16, kind)
        with torch.no_grad():
            clean, reference = toy_bf16(tokens), toy_bf16.run_with_hooks(tokens, fwd_hooks=hand_hooks(d))
            clean_engine = forward_logits(PhiWeights.from_model(toy_bf16), tokens)
            clean_steps = generate(
                toy_bf16, tokens[:, :5], 3, stop_at_eos=False, return_logits=True
            ).step_logits
            with splice(toy_bf16, d):
                spliced, engine = toy_bf16(tokens), forward_logits(PhiWeights.from_model(toy_bf16), tokens)
                steps = generate(
                    toy_bf16, tokens[:, :5], 3, stop_at_eos=False, return_logits=True
                ).step_logits
            with splice(toy_bf16, d, error=False):
                without = toy_bf16(tokens)
        assert spliced.dtype == torch.bfloat16 and d.W_dec.dtype == torch.float32
        assert torch.equal(spliced, clean) and torch.equal(engine, clean_engine)
        assert all(torch.equal(a, b) for a, b in zip(steps, clean_steps, strict=True))
        assert torch.equal(without, reference) and not torch.equal(without, clean)

    @pytest.mark.parametrize("kind", KINDS)
    def test_the_error_is_what_the_reconstruction_misses(self, toy_model, kind):
        tokens = tokens_for(toy_model)
        d = make_dict(toy_model, kind, layer=2)
        with torch.no_grad(), splice(toy_model, d) as spliced:
            _, cache = toy_model.run_with_cache(tokens)
            acts = cache[spliced.name(d, "hook_acts")]
            recons = cache[spliced.name(d, "hook_recons")]
            error = cache[spliced.name(d, "hook_error")]
            x = cache[d.hook_name]
            assert acts.shape == (*tokens.shape, d.d_sae) and recons.shape == error.shape == x.shape
            assert torch.equal(acts, d.encode(x)) and 0 < (acts > 0).float().mean() < 1
            torch.testing.assert_close(recons, d(x))
            written = cache[d.hook_name_out]
            torch.testing.assert_close(recons + error, written)
            assert float(error.abs().max()) > 0


class TestWithoutErrorTerm:
    @pytest.mark.parametrize("kind", KINDS)
    def test_bridge_and_engine_equal_a_hand_written_hook(self, model, kind):
        tokens = tokens_for(model)
        d = make_dict(model, kind)
        with torch.no_grad():
            reference = model.run_with_hooks(tokens, fwd_hooks=hand_hooks(d))
            clean = model(tokens)
            with splice(model, d, error=False) as spliced:
                bridge, cache = model.run_with_cache(tokens)
                w = PhiWeights.from_model(model)
                engine, last = forward_logits(w, tokens), run_final_logits(w, tokens)
        assert float((reference - clean).abs().max()) > 1e-2  # the dictionary changes the output
        close(bridge, reference)
        close(engine, reference)
        close(last, reference[:, -1])
        assert spliced.name(d, "hook_recons") in cache and not any(k.endswith("hook_error") for k in cache)

    @pytest.mark.parametrize("kind", KINDS)
    def test_generation_equals_a_hand_written_greedy_loop(self, toy_model, kind):
        tokens = tokens_for(toy_model, shape=(1, 5))
        d = make_dict(toy_model, kind)
        sequence, reference = tokens, []
        with torch.no_grad():
            for _ in range(4):
                logits = toy_model.run_with_hooks(sequence, fwd_hooks=hand_hooks(d))[:, -1]
                reference.append(logits[0])
                sequence = torch.cat([sequence, logits.argmax(-1, keepdim=True)], dim=1)
        with splice(toy_model, d, error=False):
            out = generate(toy_model, tokens, 4, stop_at_eos=False, return_logits=True)
        assert torch.equal(out.tokens[0], sequence[0])
        close(out.step_logits[0], torch.stack(reference))

    def test_a_transcoder_reads_its_input_after_other_hooks_there(self, toy_model):
        tokens = tokens_for(toy_model)
        d = make_dict(toy_model, "transcoder")

        def halve(act, hook):
            return act * 0.5

        with torch.no_grad():
            reference = toy_model.run_with_hooks(tokens, fwd_hooks=[(d.hook_name, halve), *hand_hooks(d)])
            with splice(toy_model, d, error=False):
                bridge = toy_model.run_with_hooks(tokens, fwd_hooks=[(d.hook_name, halve)])
                w = PhiWeights.from_model(toy_model)
                engine = forward_logits_with(w, tokens, {d.hook_name: lambda t, site: t * 0.5})
        close(bridge, reference)
        close(engine, reference)


class TestMethodsSeeTheSplice:
    @pytest.mark.parametrize("kind", ["transcoder", "sae"])
    def test_activation_patching_equals_a_hand_written_patching_loop(self, toy_model, kind):
        """The SAE sits at blocks.2.hook_resid_pre, a point the sweep patches: the patched value there is
        the source run's spliced (reconstructed) one in both."""
        from helpers import ioi_pairs

        from interp.methods.activation_patching import sweep

        pairs = ioi_pairs(toy_model.tokenizer, 4)
        d = make_dict(toy_model, kind, layer=2)
        clean_tokens, corrupted_tokens = pairs.clean_tokens, pairs.corrupted_tokens
        rows = torch.arange(len(pairs))

        def metric(logits):
            last = logits[:, -1]
            return (last[rows, pairs.answer] - last[rows, pairs.wrong]).mean()

        with torch.no_grad():
            source = {}
            hooks = [
                *hand_hooks(d),
                *[(f"blocks.{layer}.hook_resid_pre", keep_into(source, layer)) for layer in range(4)],
            ]
            clean = metric(toy_model.run_with_hooks(clean_tokens, fwd_hooks=hooks))
            reference = torch.zeros(4, clean_tokens.shape[1])
            for layer in range(4):
                for pos in range(clean_tokens.shape[1]):
                    patch = patch_at(source[layer], pos)
                    hooks = [*hand_hooks(d), (f"blocks.{layer}.hook_resid_pre", patch)]  # after the splice
                    reference[layer, pos] = metric(
                        toy_model.run_with_hooks(corrupted_tokens, fwd_hooks=hooks)
                    )
            with splice(toy_model, d, error=False):
                result = sweep(toy_model, pairs, "resid_pre")
            unspliced = sweep(toy_model, pairs, "resid_pre")
        assert result.clean == pytest.approx(float(clean), rel=1e-4)
        close(result.values, reference)
        assert float((unspliced.values - reference).abs().max()) > 1e-2

    @pytest.mark.parametrize("kind", KINDS)
    def test_activation_patching_with_the_error_term_is_the_unspliced_one(self, toy_model, kind):
        from helpers import ioi_pairs

        from interp.methods.activation_patching import sweep

        pairs = ioi_pairs(toy_model.tokenizer, 3)
        with torch.no_grad():
            unspliced = sweep(toy_model, pairs, "head_out")
            with splice(toy_model, make_dict(toy_model, kind, layer=2)):
                spliced = sweep(toy_model, pairs, "head_out")
        close(spliced.values, unspliced.values)
        assert spliced.clean == unspliced.clean


def keep_into(store, key):
    def hook(act, hook):
        store[key] = act.clone()

    return hook


def patch_at(source, pos):
    def hook(act, hook):
        act = act.clone()
        act[:, pos] = source[:, pos]
        return act

    return hook


class TestGradients:
    @pytest.mark.parametrize("kind", ["sae_at_ln", "transcoder"])
    def test_bridge_gradients_are_the_engines(self, toy_model, kind):
        tokens = tokens_for(toy_model)
        if kind == "transcoder":
            d = make_dict(toy_model, "transcoder")
        else:
            d = make_dictionary("topk", d_in=160, d_sae=96, k=6, hook_name="blocks.1.ln1.hook_normalized")
        weight = toy_model.original_model.model.layers[0].self_attn.dense.weight  # upstream of block 1
        with splice(toy_model, d, error=False):
            (bridge,) = torch.autograd.grad(toy_model(tokens).pow(2).mean(), [weight])
            w = PhiWeights.from_model(toy_model)
            (engine,) = torch.autograd.grad(forward_logits(w, tokens).pow(2).mean(), [weight])
            assert active_hook_count(toy_model) == 0
        (clean,) = torch.autograd.grad(toy_model(tokens).pow(2).mean(), [weight])
        close(bridge, engine)
        assert float((clean - engine).abs().max()) > 1e-3 * float(engine.abs().max())


class TestDictionaryPoints:
    def test_latent_edits_agree_on_bridge_and_engine_and_a_hand_reference(self, toy_model):
        tokens = tokens_for(toy_model)
        sae = make_dict(toy_model, "sae")
        with torch.no_grad():
            acts = sae.encode(toy_model.run_with_cache(tokens, names_filter=sae.hook_name)[1][sae.hook_name])
        latent = int(acts.gt(0).float().mean((0, 1)).argmax())  # a latent that fires

        def hand(act, hook):  # activation + the change the edit makes to the reconstruction
            a = sae.encode(act)
            edited = a.clone()
            edited[..., latent] = 3.0
            return act + (sae.decode(edited) - sae.decode(a))

        def clamp(a, hook):
            a = a.clone()
            a[..., latent] = 3.0
            return a

        with torch.no_grad():
            reference = toy_model.run_with_hooks(tokens, fwd_hooks=[(sae.hook_name, hand)])
            with splice(toy_model, sae) as spliced:
                name = spliced.name(sae)
                bridge = toy_model.run_with_hooks(tokens, fwd_hooks=[(name, clamp)])
                w = PhiWeights.from_model(toy_model)
                engine = forward_logits_with(w, tokens, {name: lambda a, site: clamp(a, None)})
        close(bridge, reference)
        close(engine, reference)
        with torch.no_grad():
            assert float((reference - toy_model(tokens)).abs().max()) > 1e-3

    def test_engine_keep_reads_what_the_bridge_caches(self, toy_model):
        tokens = tokens_for(toy_model)
        tc = make_dict(toy_model, "skip_transcoder", layer=2)
        with torch.no_grad(), splice(toy_model, tc) as spliced:
            _, cache = toy_model.run_with_cache(tokens)
            store = {}
            w = PhiWeights.from_model(toy_model)
            names = list(spliced.points)
            forward(w, w.W_E[tokens], {name: Keep(store) for name in names})
        for name in names:
            torch.testing.assert_close(store[name], cache[name], rtol=1e-4, atol=1e-4)

    def test_the_schema_learns_the_points_while_spliced(self, toy_model):
        sae = make_dict(toy_model, "sae")
        name = "blocks.1.hook_resid_pre.dict.hook_acts"
        with pytest.raises(ValueError, match="no dictionary is spliced"):
            check_points([name], toy_model.cfg.n_layers)
        with splice(toy_model, sae, error=False) as spliced:
            assert spliced.name(sae) == name
            check_points([name], toy_model.cfg.n_layers)
            assert hook_points.dims(name) == ("batch", "pos", "d_sae")
            assert hook_points.pos_axis_from_end(name) == -2
            points = hook_points.all_points(toy_model.cfg.n_layers)
            assert points[points.index("blocks.1.hook_resid_pre") + 1] == name
            with pytest.raises(HookNameError, match=name.replace(".", r"\.")):
                validate_hook_names(toy_model, ["blocks.1.hook_resid_pre.dict.hook_act"])
            with pytest.raises(InputError, match="error=True only"):
                spliced.name(sae, "hook_error")
            with pytest.raises(ValueError, match="not edit points"):
                check_points(["blocks.1.hook_resid_pre.dict.hook_error"], toy_model.cfg.n_layers)
        assert name not in hook_points.all_points(toy_model.cfg.n_layers)


def forward_logits_with(w, tokens, edits):
    from interp.engine.ops import unembed

    return unembed(w, forward(w, w.W_E[tokens], edits).resid_final)


class TestExit:
    def test_everything_is_removed_even_when_the_body_raises(self, toy_model):
        tokens = tokens_for(toy_model)
        tc = make_dict(toy_model, "skip_transcoder")
        sae = make_dict(toy_model, "sae", layer=2)
        clean = toy_model(tokens)
        names = set(toy_model.hook_dict)
        counts = {n: len(toy_model.hook_dict[n]._forward_hooks) for n in (tc.hook_name, tc.hook_name_out)}
        with pytest.raises(RuntimeError, match="the body fails"):
            with splice(toy_model, [tc, sae], error=False):
                assert set(toy_model.hook_dict) > names
                assert not torch.equal(toy_model(tokens), clean)
                raise RuntimeError("the body fails")
        assert set(toy_model.hook_dict) == names
        assert {n: len(toy_model.hook_dict[n]._forward_hooks) for n in counts} == counts
        assert len(toy_model.hook_dict[tc.hook_name]._forward_pre_hooks) == 0
        assert len(toy_model.hook_dict[tc.hook_name].fwd_hooks) == 0
        assert not hook_points.SPLICED and splicing.active(toy_model) is None
        assert PhiWeights.from_model(toy_model).splice is None
        assert torch.equal(toy_model(tokens), clean) and active_hook_count(toy_model) == 0

    def test_user_hooks_policy_does_not_count_the_splice(self, toy_model):
        with splice(toy_model, make_dict(toy_model, "sae")):
            assert active_hook_count(toy_model) == 0


class TestRefusals:
    def test_a_hook_that_is_not_a_hook_point(self, toy_model):
        d = make_dictionary("topk", d_in=160, d_sae=32, k=4, hook_name="blocks.1.hook_resid_pr")
        with pytest.raises(HookNameError, match="blocks.1.hook_resid_pre"):
            with splice(toy_model, d):
                pass
        d = make_dictionary("topk", d_in=160, d_sae=32, k=4, hook_name="blocks.9.hook_resid_pre")
        with pytest.raises(HookNameError, match="layers 0..3"):
            with splice(toy_model, d):
                pass

    def test_a_point_splice_cannot_act_at(self, toy_model):
        d = make_dictionary("topk", d_in=40, d_sae=32, k=4, hook_name="blocks.1.attn.hook_z")
        with pytest.raises(InputError, match="splice cannot read or write"):
            with splice(toy_model, d):
                pass

    def test_a_width_mismatch(self, toy_model):
        d = make_dictionary("topk", d_in=100, d_sae=32, k=4, hook_name="blocks.1.hook_resid_pre")
        with pytest.raises(InputError, match="d_in=100.*160 wide"):
            with splice(toy_model, d):
                pass
        tc = make_dictionary(
            "topk", d_in=160, d_out=640, d_sae=32, k=4, kind="transcoder",
            hook_name="blocks.1.ln1.hook_normalized", hook_name_out="blocks.1.hook_mlp_out",
        )  # fmt: skip
        with pytest.raises(InputError, match="d_out=640"):
            with splice(toy_model, tc):
                pass

    def test_two_dictionaries_writing_one_hook_point(self, toy_model):
        a = make_dict(toy_model, "sae")
        b = make_dictionary("topk", d_in=160, d_sae=32, k=4, hook_name="blocks.1.hook_in")  # an alias
        with pytest.raises(InputError, match="two dictionaries write blocks.1.hook_resid_pre"):
            with splice(toy_model, [a, b]):
                pass
        sae_out = make_dictionary("topk", d_in=160, d_sae=32, k=4, hook_name="blocks.1.hook_mlp_out")
        with pytest.raises(InputError, match="two dictionaries write blocks.1.hook_mlp_out"):
            with splice(toy_model, [make_dict(toy_model, "transcoder"), sae_out]):
                pass

    def test_a_transcoder_across_blocks_or_backwards(self, toy_model):
        for hook_name, hook_name_out in (
            ("blocks.0.ln1.hook_normalized", "blocks.1.hook_mlp_out"),
            ("blocks.1.hook_mlp_out", "blocks.1.ln1.hook_normalized"),
        ):
            tc = make_dictionary(
                "topk",
                d_in=160,
                d_sae=32,
                k=4,
                kind="transcoder",
                hook_name=hook_name,
                hook_name_out=hook_name_out,
            )
            with pytest.raises(InputError, match="same block"):
                with splice(toy_model, tc):
                    pass

    def test_nesting_and_bad_arguments(self, toy_model, tiny_phi):
        sae = make_dict(toy_model, "sae")
        with splice(toy_model, sae):
            with pytest.raises(InputError, match="already has dictionaries spliced"):
                with splice(toy_model, make_dict(toy_model, "sae", layer=2)):
                    pass
            with pytest.raises(InputError, match="another model"):
                with splice(tiny_phi, make_dict(tiny_phi, "sae")):
                    pass
            assert torch.equal(toy_model(tokens_for(toy_model)), toy_model(tokens_for(toy_model)))
        assert not hook_points.SPLICED
        with pytest.raises((InputError, TypeCheckError), match="error"):  # the type checker (tests) or splice
            with splice(toy_model, sae, error=1):
                pass
        with pytest.raises(InputError, match="non-empty list"):
            with splice(toy_model, []):
                pass
        bare = make_dictionary("topk", d_in=160, d_sae=32, k=4)
        with pytest.raises(InputError, match="no hook_name"):
            with splice(toy_model, bare):
                pass

    def test_engine_edits_at_points_of_no_splice(self, toy_model):
        w = PhiWeights.from_model(toy_model)
        tokens = tokens_for(toy_model)
        from interp.engine.forward import block

        with pytest.raises(ValueError, match="no dictionary is spliced"):
            block(w, 1, w.W_E[tokens], edits={"hook_resid_pre.dict.hook_acts": [Replace(torch.zeros(1))]})
