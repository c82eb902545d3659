"""Hooked generation (interp.methods.generation): greedy tokens equal Hugging Face `generate`; with an
intervention, the cached path equals recomputing the whole sequence every step; padding-free batching;
activations gathered while generating equal a forward over the generated text; steering by construction."""

from __future__ import annotations

import pytest
import torch
from helpers import hf_reference

from interp.base.errors import InputError
from interp.engine.forward import PhiWeights
from interp.methods.generation import generate
from interp.methods.interventions import Ablate, AblateHeads, Component, Steer
from interp.model.loading import load_model
from interp.model.sources import TOY_DIR


@pytest.fixture(scope="module")
def tiny(tiny_phi_dir):
    return load_model(tiny_phi_dir)


def hf_greedy(directory, tokens: torch.Tensor, n: int) -> torch.Tensor:
    """A plain Hugging Face model from the same directory (not the bridge's wrapped copy)."""
    hf = hf_reference(directory)
    out = hf.generate(
        tokens[None], attention_mask=torch.ones_like(tokens)[None], max_new_tokens=n, do_sample=False,
        eos_token_id=None, pad_token_id=0,
    )  # fmt: skip
    return out[0]


@pytest.mark.parametrize("which", ["tiny", "toy"])
def test_greedy_equals_hugging_face_generate(which, tiny, toy_model, tiny_phi_dir):
    model, directory = (tiny, tiny_phi_dir) if which == "tiny" else (toy_model, TOY_DIR)
    g = torch.Generator().manual_seed(0)
    for length in (3, 9):
        tokens = torch.randint(5, min(model.cfg.d_vocab, 300), (length,), generator=g)
        ours = generate(model, tokens[None], 12, stop_at_eos=False)
        assert torch.equal(ours.tokens[0], hf_greedy(directory, tokens, 12))


def test_toy_text_matches_hugging_face(toy_model):
    prompt = "When Mary and John went to the store, John gave a drink to"
    tokens = toy_model.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    ours = generate(toy_model, prompt, 6, stop_at_eos=False)
    assert torch.equal(ours.tokens[0], hf_greedy(TOY_DIR, tokens, 6))
    assert ours.texts[0] == toy_model.tokenizer.decode(ours.new_tokens[0])


@pytest.mark.parametrize("where", ["all", "prompt", "generated"])
def test_cached_generation_equals_recomputing_every_step(tiny, where):
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(5, 300, (2, 6), generator=g)
    vector = torch.randn(tiny.cfg.d_model, generator=g)
    interventions = [Steer(1, vector, 3.0, where), AblateHeads([(0, 1), (1, 0)], where)]
    cached = generate(tiny, tokens, 8, interventions=interventions, stop_at_eos=False, return_logits=True)
    full = generate(
        tiny, tokens, 8, interventions=interventions, stop_at_eos=False, return_logits=True, use_cache=False
    )
    plain = generate(tiny, tokens, 8, stop_at_eos=False, return_logits=True)
    for a, b, c in zip(cached.step_logits, full.step_logits, plain.step_logits, strict=True):
        assert (a - b).abs().max() <= 1e-4
        assert (a - c).abs().max() > 1e-3  # the intervention does something
    assert all(torch.equal(a, b) for a, b in zip(cached.tokens, full.tokens, strict=True))


def test_multiplier_zero_changes_nothing(tiny):
    tokens = torch.randint(5, 300, (2, 5), generator=torch.Generator().manual_seed(2))
    vector = torch.randn(tiny.cfg.d_model)
    plain = generate(tiny, tokens, 6, stop_at_eos=False, return_logits=True)
    zero = generate(
        tiny, tokens, 6, interventions=[Steer(1, vector, 0.0)], stop_at_eos=False, return_logits=True
    )
    for a, b in zip(plain.step_logits, zero.step_logits, strict=True):
        assert torch.equal(a, b)


def test_steering_along_a_tokens_unembedding_makes_the_model_say_it(toy_model):
    """By construction: at the final residual, a large multiple of W_U[X] / ln_f.w (the direction whose
    LayerNorm output is W_U[X]'s own) makes X the greedy token at every generated step."""
    w = PhiWeights.from_model(toy_model)
    prompt = "When Mary and John went to the store, John gave a drink to"
    for token in toy_model.tokenizer([" store", " drink", " John"], add_special_tokens=False)["input_ids"]:
        x = token[0]
        direction = (w.W_U[x] / w.ln_f_w).detach().float()
        steer = Steer(toy_model.cfg.n_layers, direction / direction.norm(), 500.0, "generated")
        out = generate(
            toy_model,
            prompt,
            4,
            interventions=[Steer(steer.layer, steer.vector, 500.0, "all")],
            stop_at_eos=False,
        )
        assert out.new_tokens[0].tolist() == [x] * 4, out.texts


def test_prompts_of_different_lengths_give_each_prompts_own_text(toy_model):
    prompts = [
        "When Mary and John went to the store, John gave a drink to",
        "Then, Anna and Tom had a long argument. Afterwards Tom said to",
        "The cat",
    ]
    together = generate(toy_model, prompts, 5, stop_at_eos=False)
    for i, prompt in enumerate(prompts):
        alone = generate(toy_model, prompt, 5, stop_at_eos=False)
        assert torch.equal(together.tokens[i], alone.tokens[0]) and together.texts[i] == alone.texts[0]


def test_activations_of_generated_tokens_equal_a_forward_over_the_text(toy_model):
    out = generate(toy_model, "When Mary and John went to the store, John gave a drink to", 5,
                   keep=["resid_pre.2", "resid_final"], stop_at_eos=False)  # fmt: skip
    _, cache = toy_model.run_with_cache(out.tokens[0][None])
    assert out.activations["resid_pre.2"][0].shape[0] == len(out.tokens[0])
    assert torch.allclose(out.activations["resid_pre.2"][0], cache["blocks.2.hook_resid_pre"][0], atol=1e-4)
    final = cache[f"blocks.{toy_model.cfg.n_layers - 1}.hook_resid_post"][0]
    assert torch.allclose(out.activations["resid_final"][0], final, atol=1e-4)


def test_sampling_is_seeded_and_stops_at_eos(toy_model):
    a = generate(toy_model, "The", 8, temperature=1.0, seed=3)
    b = generate(toy_model, "The", 8, temperature=1.0, seed=3)
    assert a.texts == b.texts
    eos = toy_model.tokenizer.eos_token_id
    for tokens in a.new_tokens:
        assert eos not in tokens[:-1].tolist()


def test_bad_interventions_are_refused(tiny):
    with pytest.raises(InputError, match=r"shape \(.*\)"):
        generate(tiny, torch.tensor([[5, 6]]), 2, interventions=[Steer(0, torch.zeros(3))])
    later = AblateHeads([(0, 0)])
    later.positions = "later"  # as from an untyped caller
    with pytest.raises(InputError, match="positions='later'"):
        generate(tiny, torch.tensor([[5, 6]]), 2, interventions=[later])
    with pytest.raises(InputError, match=r"heads \[\(9, 0\)\]"):
        generate(tiny, torch.tensor([[5, 6]]), 2, interventions=[AblateHeads([(9, 0)])])
    with pytest.raises(InputError, match="keep='resid_pre.9'"):
        generate(tiny, torch.tensor([[5, 6]]), 2, keep=["resid_pre.9"])


class TestPaddedBatches:
    """Prompts of different lengths in one left-padded batch: each prompt's text, step logits and kept
    activations equal generating it alone, with and without interventions; Hugging Face's own padded
    `generate` (attention mask, positions from the mask) gives the same tokens."""

    @pytest.fixture(scope="class")
    def ragged(self):
        g = torch.Generator().manual_seed(11)
        return [torch.randint(5, 300, (n,), generator=g) for n in (3, 8, 5)]

    @pytest.mark.parametrize("where", ["all", "prompt", "generated"])
    def test_each_prompt_as_if_alone(self, tiny, ragged, where):
        vector = torch.randn(tiny.cfg.d_model, generator=torch.Generator().manual_seed(12))
        interventions = [Steer(1, vector, 2.0, where), AblateHeads([(0, 1)], where)]
        keep = ["blocks.1.hook_resid_pre", "blocks.0.attn.hook_pattern", "blocks.1.attn.hook_z"]
        kwargs = dict(interventions=interventions, stop_at_eos=False, return_logits=True, keep=keep)
        together = generate(tiny, ragged, 6, batching="padded", **kwargs)
        for i, tokens in enumerate(ragged):
            alone = generate(tiny, tokens[None], 6, **kwargs)
            assert torch.equal(together.tokens[i], alone.tokens[0])
            assert (together.step_logits[i] - alone.step_logits[0]).abs().max() <= 1e-4
            for name in keep:
                ours, theirs = together.activations[name][i], alone.activations[name][0]
                assert ours.shape == theirs.shape and torch.allclose(ours, theirs, atol=1e-4), name

    def test_by_length_and_padded_agree(self, tiny, ragged):
        texts = ragged  # token ids: a decode / encode round trip need not give them back
        padded = generate(tiny, texts, 5, stop_at_eos=False, batching="padded", return_logits=True)
        grouped = generate(tiny, texts, 5, stop_at_eos=False, batching="by_length", return_logits=True)
        assert padded.texts == grouped.texts
        for a, b in zip(padded.step_logits, grouped.step_logits, strict=True):
            assert (a - b).abs().max() <= 1e-4

    def test_hugging_face_padded_generate_gives_the_same_tokens(self, tiny, tiny_phi_dir, ragged):
        hf = hf_reference(tiny_phi_dir)
        width = max(len(t) for t in ragged)
        ids = torch.stack([torch.cat([torch.zeros(width - len(t), dtype=torch.long), t]) for t in ragged])
        mask = torch.stack(
            [torch.cat([torch.zeros(width - len(t)), torch.ones(len(t))]) for t in ragged]
        ).long()
        theirs = hf.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0,
                             eos_token_id=None)  # fmt: skip
        ours = generate(tiny, ragged, 6, stop_at_eos=False)
        for i in range(len(ragged)):
            assert ours.new_tokens[i].tolist() == theirs[i, width:].tolist()

    def test_interventions_at_absolute_positions_group_by_length(self, tiny, ragged):
        from interp.methods.interventions import Hook

        hook = Hook("blocks.0.hook_resid_pre", lambda x, site: x * 1.5, positions=[1, 2])
        texts = ragged  # token ids: a decode / encode round trip need not give them back
        with pytest.raises(InputError, match="batching='padded' takes Steer and AblateHeads"):
            generate(tiny, texts, 3, interventions=[hook], batching="padded")
        together = generate(tiny, texts, 4, interventions=[hook], stop_at_eos=False)  # auto: by length
        for i, tokens in enumerate(ragged):
            alone = generate(tiny, tokens[None], 4, interventions=[hook], stop_at_eos=False)
            assert torch.equal(together.tokens[i], alone.tokens[0])


class TestNonFiniteLogits:
    """NaN logits have argmax 0, which was returned as text with no error: now an error naming the
    step, the prompt and the intervention that wrote the first NaN or +inf, on every path; -inf alone
    (a banned token, a masked score) is not an error."""

    @staticmethod
    def nan_at_generated(x, site):
        return x * float("nan")

    @pytest.mark.parametrize(
        "kwargs",
        [
            dict(stop_at_eos=False),
            dict(stop_at_eos=True),
            dict(stop_at_eos=False, use_cache=False),
            dict(stop_at_eos=False, temperature=1.0),  # was a RuntimeError inside torch.multinomial
            dict(stop_at_eos=False, keep=["resid_final"], return_logits=True),
        ],
    )
    def test_a_hook_writing_nan_is_named_with_the_step(self, tiny, kwargs):
        from interp.methods.interventions import Hook

        tokens = torch.randint(5, 300, (2, 6), generator=torch.Generator().manual_seed(21))
        hook = Hook("blocks.1.hook_resid_pre", self.nan_at_generated, positions="generated")
        with pytest.raises(
            InputError,
            match=r"generation step 1 \(new token 2\) of prompt 0 .* NaN or infinite logits.* "
            r"Hook\('blocks.1.hook_resid_pre'\) introduced them: .* first at position 6",
        ):
            generate(tiny, tokens, 4, interventions=[hook], **kwargs)

    def test_a_nan_at_a_listed_position_of_one_prompt_names_that_prompt(self, tiny):
        from interp.methods.interventions import Hook

        def nan_in_second_row(x, site):
            x = x.clone()
            x[1] = float("nan")
            return x

        tokens = torch.randint(5, 300, (2, 6), generator=torch.Generator().manual_seed(22))
        hook = Hook("blocks.0.attn.hook_z", nan_in_second_row, positions=[7])
        with pytest.raises(InputError, match=r"step 2 \(new token 3\) of prompt 1 .* first at position 7"):
            generate(tiny, tokens, 4, interventions=[hook], stop_at_eos=False)

    def test_non_finite_weights_are_blamed_on_the_forward(self, tiny_phi_dir):
        model = load_model(tiny_phi_dir)  # its own copy: the weights are spoilt below
        with torch.no_grad():
            model.original_model.model.embed_tokens.weight[7] = float("inf")
        from interp.base.errors import ResultsError

        with pytest.raises(
            ResultsError, match=r"step 0 .* No intervention wrote NaN or \+inf \(interventions: none\)"
        ):
            generate(model, torch.tensor([[5, 6, 7]]), 3)
        with pytest.raises(ResultsError, match=r"interventions: AblateHeads"):
            generate(
                model,
                [torch.tensor([5, 6]), torch.tensor([5, 7, 6])],
                3,
                interventions=[AblateHeads([(0, 0)])],
            )
        assert generate(model, torch.tensor([[5, 6, 8]]), 3).new_tokens[0].numel() > 0  # token 7 unused: fine

    @pytest.mark.parametrize("temperature", [0.0, 1.0])
    def test_minus_infinity_bans_a_token_and_is_not_an_error(self, tiny, temperature):
        from interp.methods.interventions import Hook

        tokens = torch.randint(5, 300, (2, 5), generator=torch.Generator().manual_seed(25))
        plain = generate(tiny, tokens, 6, stop_at_eos=False)
        banned = int(plain.new_tokens[0][0])

        def ban(logits, site):
            logits[..., banned] = float("-inf")  # in place, as TransformerLens hooks do

        def mask_first_key(scores, site):  # no position but the first attends to position 0
            scores = scores.clone()
            scores[..., (1 if site.start == 0 else 0) :, 0] = float("-inf")
            return scores

        masked = Hook("blocks.0.attn.hook_attn_scores", mask_first_key)
        kwargs = dict(stop_at_eos=False, temperature=temperature) | (dict(seed=1) if temperature else {})
        out = generate(tiny, tokens, 6, interventions=[Hook("hook_unembed", ban), masked], **kwargs)
        assert all(banned not in t.tolist() for t in out.new_tokens)

    def test_a_finite_run_is_unchanged_by_the_check(self, tiny):
        """The check only reads the logits: the same tokens and logits as before, with an
        intervention on every step (here against recomputing without the cache)."""
        tokens = torch.randint(5, 300, (2, 5), generator=torch.Generator().manual_seed(23))
        steer = [Steer(1, torch.randn(tiny.cfg.d_model, generator=torch.Generator().manual_seed(24)), 2.0)]
        a = generate(tiny, tokens, 6, interventions=steer, stop_at_eos=False, return_logits=True)
        b = generate(
            tiny, tokens, 6, interventions=steer, stop_at_eos=False, return_logits=True, use_cache=False
        )
        assert all(torch.isfinite(t).all() for t in a.step_logits)
        assert all(torch.equal(x, y) for x, y in zip(a.tokens, b.tokens, strict=True))


def test_the_readme_generation_block_runs_as_written():
    """README.md's "Generating with interventions" block, after the "Instruments" block that defines
    `model` (the toy) and `pairs`, executed as written (it named an undefined `corrupted_tokens`)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    instruments = [b for b in blocks if "pairs = interp.PromptPairs.from_strings" in b]
    generation = [b for b in blocks if b.startswith("from interp import AblateHeads, Hook, Patch, generate")]
    assert len(instruments) == 1 and len(generation) == 1
    namespace: dict = {}
    exec(instruments[0], namespace)
    exec(generation[0], namespace)
    assert namespace["model"].cfg.n_layers == 4  # the toy


class TestAblateWhileGenerating:
    """`Ablate` in generate: a zero or mean ablation at every position, equal to TransformerLens's
    `run_with_hooks` over the generated text with the mean written by hand, to `AblateHeads` for a
    zero head, and the same padded or alone; what needs a reference value per position is refused."""

    def test_mean_ablation_equals_a_hand_written_hook_over_the_generated_text(self, tiny):
        g = torch.Generator().manual_seed(21)
        tokens, other = torch.randint(5, 300, (1, 5), generator=g), torch.randint(5, 300, (3, 9), generator=g)
        point = "blocks.1.hook_mlp_out"
        item = Ablate(Component("mlp", 1), "mean", reference=other)
        out = generate(tiny, tokens, 6, interventions=[item], stop_at_eos=False, return_logits=True)
        mean = tiny.run_with_cache(other, names_filter=[point])[1][point].mean(dim=(0, 1))
        with torch.no_grad():
            full = tiny.run_with_hooks(
                out.tokens[0][None], fwd_hooks=[(point, lambda act, hook: mean.expand_as(act).clone())]
            )
        expected = full[0, tokens.shape[1] - 1 : tokens.shape[1] - 1 + 6]
        assert (out.step_logits[0] - expected).abs().max() <= 1e-4
        assert torch.equal(out.new_tokens[0], expected.argmax(-1))
        plain = generate(tiny, tokens, 6, stop_at_eos=False, return_logits=True)
        assert (plain.step_logits[0] - out.step_logits[0]).abs().max() > 1e-3  # the ablation does something

    def test_zero_ablating_a_head_equals_ablate_heads(self, tiny):
        tokens = torch.randint(5, 300, (2, 4), generator=torch.Generator().manual_seed(22))
        kwargs = dict(stop_at_eos=False, return_logits=True)
        ours = generate(
            tiny, tokens, 5, interventions=[Ablate(Component("head", 0, 1), positions="prompt")], **kwargs
        )
        theirs = generate(tiny, tokens, 5, interventions=[AblateHeads([(0, 1)], "prompt")], **kwargs)
        assert ours.texts == theirs.texts
        for a, b in zip(ours.step_logits, theirs.step_logits, strict=True):
            assert torch.equal(a, b)

    def test_a_padded_batch_equals_each_prompt_alone(self, tiny):
        g = torch.Generator().manual_seed(23)
        ragged = [torch.randint(5, 300, (n,), generator=g) for n in (3, 7)]
        item = Ablate(Component("neuron", 1, 4), "mean", reference=torch.randint(5, 300, (2, 6), generator=g))
        kwargs = dict(interventions=[item], stop_at_eos=False, return_logits=True)
        together = generate(tiny, ragged, 5, batching="padded", **kwargs)
        for i, tokens in enumerate(ragged):
            alone = generate(tiny, tokens[None], 5, **kwargs)
            assert torch.equal(together.tokens[i], alone.tokens[0])
            assert (together.step_logits[i] - alone.step_logits[0]).abs().max() <= 1e-4

    @pytest.mark.parametrize("method", ["resample", "counterfactual"])
    def test_a_reference_value_per_position_is_refused(self, tiny, method):
        tokens = torch.randint(5, 300, (1, 4), generator=torch.Generator().manual_seed(24))
        item = Ablate(Component("mlp", 0), method, reference=tokens)
        with pytest.raises(InputError, match=rf"generate ablates with 'zero' or 'mean'.*{method!r}"):
            generate(tiny, tokens, 3, interventions=[item])
