"""Steering vectors (interp.methods.steering): the vector is the mean clean - corrupted residual at the
final token (checked against the bridge's cache), multiplier 0 is the unsteered run, and on the toy a
vector from IOI pairs flips the IOI answer at some layer (the sweep is printed as measured)."""

from __future__ import annotations

import pytest
import torch
from helpers import ioi_pairs

from interp.base.errors import InputError
from interp.data.tasks import build_pairs
from interp.data.tasks.options import TaskConfig
from interp.methods.steering import projection, steer_sweep, steering_vector, steering_vector_from_prompts


def test_vector_is_the_mean_final_token_difference(toy_model):
    pairs = ioi_pairs(toy_model.tokenizer, 6, seed=2)
    vector = steering_vector(toy_model, pairs, 2)
    expected = []
    for i in range(len(pairs)):
        n = int(pairs.lengths[i])
        _, clean = toy_model.run_with_cache(pairs.clean_tokens[i : i + 1, :n])
        _, corrupted = toy_model.run_with_cache(pairs.corrupted_tokens[i : i + 1, :n])
        name = "blocks.2.hook_resid_pre"
        expected.append(clean[name][0, -1] - corrupted[name][0, -1])
    assert torch.allclose(vector.vector, torch.stack(expected).mean(0), atol=1e-4)
    one = steering_vector_from_prompts(
        toy_model, ["Mary and John. John gave it to"], ["Mary and John. Mary gave it to"], 2
    )
    assert one.vector.shape == (toy_model.cfg.d_model,) and one.vector.norm() > 0


def test_projection_reads_each_tokens_residual(toy_model):
    pairs = ioi_pairs(toy_model.tokenizer, 4, seed=1)
    vector = steering_vector(toy_model, pairs, 3)
    text = "When Mary and John went to the store, John gave a drink to"
    tokens, values = projection(toy_model, text, vector)
    _, cache = toy_model.run_with_cache(text)
    unit = vector.vector / vector.vector.norm()
    assert len(tokens) == len(values) and torch.allclose(
        values, cache["blocks.3.hook_resid_pre"][0] @ unit, atol=1e-4
    )


def test_ioi_vector_flips_the_answer_at_some_layer(toy_model):
    """IOI pairs whose answer is ' Mary' (names Mary and John only): the clean - corrupted vector added to
    the corrupted prompts. Measured: mid layers (vector at every position) push further from the
    answer; the final residual flips it at multiplier 1 (-9.6 -> +10.6, the clean value is +10.6)."""
    pairs = build_pairs(TaskConfig(name="ioi", n_pairs=64, names=["Mary", "John"]), toy_model, seed=0)
    mary = toy_model.tokenizer(" Mary", add_special_tokens=False)["input_ids"][0]
    pairs = pairs.select(torch.nonzero(pairs.answer == mary).flatten())
    layers = list(range(toy_model.cfg.n_layers + 1))
    sweep = steer_sweep(toy_model, pairs, layers, [0.0, 1.0, 4.0], n_samples=1, max_new_tokens=4)
    print("steering sweep (layer x multiplier 0, 1, 4):", sweep.scores.tolist(), "unsteered", sweep.unsteered)
    assert sweep.unsteered < 0 < sweep.clean
    assert torch.allclose(sweep.scores[:, 0], torch.full((len(layers),), sweep.unsteered), atol=1e-4)
    assert sweep.kl[:, 0].abs().max() < 1e-6
    assert (sweep.scores > 0).any()  # flipped somewhere
    assert {s["layer"] for s in sweep.samples} == {None, *layers}


def test_bad_layers_are_refused(toy_model):
    pairs = ioi_pairs(toy_model.tokenizer, 2, seed=1)
    with pytest.raises(InputError, match="layer 9 is not allowed"):
        steering_vector(toy_model, pairs, 9)
    with pytest.raises(InputError, match="at least one layer"):
        steer_sweep(toy_model, pairs, [], [1.0])


def test_a_sweep_with_explicit_prompts_scores_their_vector_as_transformer_lens_hooks_do(toy_model):
    """ActAdd-style: the vector from one positive and one negative prompt, added at every position of
    the corrupted prompts; each cell equals the metric of a TransformerLens run with a hook adding it."""
    pairs = ioi_pairs(toy_model.tokenizer, 4, seed=3)
    positive, negative = ["Mary and John. John gave it to"], ["Mary and John. Mary gave it to"]
    sweep = steer_sweep(toy_model, pairs, [1], [2.0], positive=positive, negative=negative, n_samples=0)
    vector = steering_vector_from_prompts(toy_model, positive, negative, 1).vector

    def add(resid, hook):
        return resid + 2.0 * vector

    diffs = []
    for i in range(len(pairs)):
        n = int(pairs.lengths[i])
        logits = toy_model.run_with_hooks(
            pairs.corrupted_tokens[i : i + 1, :n], fwd_hooks=[("blocks.1.hook_resid_pre", add)]
        )[0, -1]
        diffs.append(logits[pairs.answer[i]] - logits[pairs.wrong[i]])
    assert sweep.scores[0, 0] == pytest.approx(torch.stack(diffs).mean().item(), abs=1e-4)
    from_pairs = steer_sweep(toy_model, pairs, [1], [2.0], n_samples=0)
    assert abs(from_pairs.scores[0, 0] - sweep.scores[0, 0]) > 1e-3  # a different vector
    with pytest.raises(InputError, match="both positive and negative"):
        steer_sweep(toy_model, pairs, [1], [1.0], positive=positive)


class TestSweepArguments:
    def test_generated_only_steering_is_refused_with_the_reason(self, toy_model):
        """The sweep scores the prompt's last position, which generated-only steering never reaches:
        every cell was the unsteered metric (KL 0) while the samples changed."""
        pairs = ioi_pairs(toy_model.tokenizer, 2, seed=4)
        with pytest.raises(
            InputError, match=r"positions='generated' is not allowed: the sweep scores the prompt's last"
        ):
            steer_sweep(toy_model, pairs, [4], [1.0], positions="generated", n_samples=0)

    def test_prompt_steering_reaches_the_scored_position(self, toy_model):
        pairs = ioi_pairs(toy_model.tokenizer, 2, seed=4)
        sweep = steer_sweep(toy_model, pairs, [4], [1.0], positions="prompt", n_samples=0)
        assert abs(sweep.scores[0, 0] - sweep.unsteered) > 1e-3 and sweep.kl[0, 0] > 1e-4

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            (
                dict(multipliers=[1.0, float("nan")]),
                r"steer_sweep multiplier=nan is not allowed; use a finite number",
            ),
            (dict(multipliers=[float("inf")]), r"multiplier=inf is not allowed"),
            (dict(n_samples=-1), r"n_samples=-1 is not allowed; use an integer >= 0"),
            (dict(max_new_tokens=0), r"max_new_tokens=0 is not allowed; use an integer >= 1"),
            (dict(layers=[9]), r"layer 9 is not allowed; use an integer 0 \.\. 4"),
            (
                dict(positive="Mary and John. John gave it to", negative=["Mary and John. Mary gave it to"]),
                r"positive='Mary and John. John gave it to' is not allowed; use a list of prompts",
            ),
        ],
    )
    def test_bad_arguments_are_refused_by_name(self, toy_model, kwargs, match):
        pairs = ioi_pairs(toy_model.tokenizer, 2, seed=4)
        args = dict(layers=[4], multipliers=[1.0], n_samples=0) | kwargs
        with pytest.raises(InputError, match=match):
            steer_sweep(toy_model, pairs, args.pop("layers"), args.pop("multipliers"), **args)


def test_generated_only_steering_never_changes_the_first_new_token(toy_model):
    """README's "Generating with interventions" claims, on its own pair and prompts: the corrupted
    prompt is answered " John"; the pair's vector at the final residual on the prompt's positions
    answers " Mary"; on the generated positions only, the first new token's logits are exactly the
    unsteered ones (it is chosen before any generated position runs) while later tokens change."""
    from interp.data.prompts import PromptPairs
    from interp.methods.generation import generate

    pairs = PromptPairs.from_strings(toy_model.tokenizer, [
        {"clean": "When Mary and John went to the store, John gave a drink to",
         "corrupted": "When Mary and John went to the store, Mary gave a drink to",
         "answer": " Mary", "wrong": " John"},
    ])  # fmt: skip
    v = steering_vector(toy_model, pairs, layer=toy_model.cfg.n_layers)
    corrupted = "When Mary and John went to the store, Mary gave a drink to"
    kwargs = dict(return_logits=True, stop_at_eos=False)
    plain = generate(toy_model, corrupted, 6, **kwargs)
    prompt = generate(toy_model, corrupted, 6, interventions=[v.steer(1.0, "prompt")], **kwargs)
    generated = generate(toy_model, corrupted, 6, interventions=[v.steer(1.0, "generated")], **kwargs)
    first = [toy_model.tokenizer.decode(g.new_tokens[0][:1]) for g in (plain, prompt, generated)]
    assert first == [" John", " Mary", " John"]
    assert torch.equal(generated.step_logits[0][0], plain.step_logits[0][0])
    assert not torch.equal(generated.step_logits[0][1:], plain.step_logits[0][1:])


def test_projection_refuses_empty_text(toy_model):
    pairs = ioi_pairs(toy_model.tokenizer, 2, seed=1)
    vector = steering_vector(toy_model, pairs, 3)
    with pytest.raises(
        InputError, match=r"projection text='' is not allowed; use a string of at least one token"
    ):
        projection(toy_model, "", vector)


class TestOnePath:
    """The sweep's Steer items run through run_with_interventions: its scores are the bridge's (the
    other target of the same vocabulary), and the numbers the sweep gave before it did (its own
    incremental runs), measured on the toy."""

    def test_scores_are_the_bridge_runs_and_the_numbers_measured_before(self, toy_model):
        from interp.data.metrics import resolve_metric
        from interp.methods.hooked_run import run_with_interventions

        pairs = ioi_pairs(toy_model.tokenizer, 8, seed=3)
        sweep = steer_sweep(toy_model, pairs, [2, 4], [1.0, 4.0], n_samples=0)
        before = torch.tensor(
            [[-10.806058883666992, -10.857453346252441], [-8.939550399780273, -2.430396795272827]]
        )
        assert torch.allclose(sweep.scores, before, atol=1e-4)
        assert sweep.unsteered == pytest.approx(-10.787893295288086, abs=1e-4)
        everyone = torch.arange(len(pairs))
        clean = run_with_interventions(toy_model, pairs.clean_tokens, [])
        measure = resolve_metric("logit_diff", pairs, pairs.at_final(clean))  # logit_diff reads no baseline
        for i, layer in enumerate([2, 4]):
            vector = steering_vector(toy_model, pairs, layer)
            for j, multiplier in enumerate([1.0, 4.0]):
                logits = torch.empty(len(pairs), toy_model.cfg.d_vocab)
                for row in range(len(pairs)):  # one prompt at a time: no padding on the bridge
                    n = int(pairs.lengths[row])
                    tokens = pairs.corrupted_tokens[row : row + 1, :n]
                    steer = vector.steer(multiplier)
                    logits[row] = run_with_interventions(toy_model, tokens, [steer], target="bridge")[0, -1]
                assert measure(logits, everyone).mean().item() == pytest.approx(
                    sweep.scores[i, j].item(), abs=1e-4
                )
