"""Every argument of `generate` checked in one place (interp.methods.generation_checks): one test per
argument class, each bad value refused with an InputError naming the argument, the value and what is
allowed, before anything runs; the values at the edge of what is allowed are accepted.

The checks are called directly (`check_generate`, with `generate`'s defaults): in this suite
beartype checks annotated signatures first and would answer a float `max_new_tokens` with its own
TypeError, while a user (no beartype) meets these checks. Values that pass the annotations (a NaN
temperature, top_k 0, token ids outside the vocabulary) go through `generate` itself too."""

from __future__ import annotations

import pytest
import torch

from interp.base.errors import InputError
from interp.methods.generation import generate
from interp.methods.generation_checks import check_generate
from interp.methods.interventions import AblateHeads, Hook, Patch, Steer
from interp.model.loading import load_model


@pytest.fixture(scope="module")
def tiny(tiny_phi_dir):
    model = load_model(tiny_phi_dir)
    assert (model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_head, model.cfg.n_ctx) == (2, 2, 40, 64)
    return model


@pytest.fixture(scope="module")
def prompt():
    return torch.tensor([[5, 6, 7, 8]])


DEFAULTS = dict(
    interventions=(),
    temperature=0.0,
    top_k=None,
    seed=None,
    stop_at_eos=True,
    keep=(),
    use_cache=True,
    return_logits=False,
    progress=False,
    batching="auto",
)  # generate's own


def refused(model, prompts, match, n=2, through_generate=False, **kwargs):
    with pytest.raises(InputError, match=match):
        if through_generate:
            generate(model, prompts, n, **kwargs)
        else:
            check_generate(model, prompts, n, **{**DEFAULTS, **kwargs})


def untyped(item, **fields):
    """`item` with `fields` set after construction, as an untyped caller can (the dataclass's
    annotated __init__ is checked by beartype in this suite)."""
    for name, value in fields.items():
        setattr(item, name, value)
    return item


def test_defaults_are_generates_own():
    import inspect

    params = inspect.signature(generate).parameters
    assert {name: params[name].default for name in DEFAULTS} == DEFAULTS


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (2.5, r"max_new_tokens=2.5 is not allowed; use an integer >= 1"),
        (True, r"max_new_tokens=True is not allowed"),
        (0, r"max_new_tokens=0 is not allowed; use an integer >= 1"),
        ("3", r"max_new_tokens='3' is not allowed"),
    ],
)
def test_max_new_tokens(tiny, prompt, value, match):
    refused(tiny, prompt, match, n=value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(temperature=float("nan")), r"temperature=nan is not allowed; use a finite number >= 0"),
        (dict(temperature=float("inf")), r"temperature=inf is not allowed"),
        (dict(temperature=-1.0), r"temperature=-1.0 is not allowed; use a finite number >= 0"),
        (dict(temperature="1"), r"temperature='1' is not allowed"),
        (dict(temperature=1.0, top_k=0), r"top_k=0 is not allowed; use an integer in 1 \.\. \d+"),
        (dict(temperature=1.0, top_k=-3), r"top_k=-3 is not allowed"),
        (dict(temperature=1.0, top_k=2.5), r"top_k=2.5 is not allowed"),
        (dict(temperature=1.0, top_k=10**9), r"top_k=1000000000 is not allowed; use an integer in 1 \.\."),
        (dict(top_k=5), r"top_k=5 applies only when sampling; with temperature=0"),
        (dict(temperature=1.0, seed=2**64), r"seed=18446744073709551616 is not allowed; use an integer in 0"),
        (dict(temperature=1.0, seed=-1), r"seed=-1 is not allowed"),
        (dict(temperature=1.0, seed=1.5), r"seed=1.5 is not allowed"),
        (dict(seed=3), r"seed=3 applies only when sampling"),
    ],
)
def test_sampling_arguments(tiny, prompt, kwargs, match):
    refused(tiny, prompt, match, **kwargs)


def test_sampling_arguments_at_the_edges_are_accepted(tiny, prompt):
    top = generate(tiny, prompt, 3, temperature=1.0, top_k=1, seed=2**64 - 1, stop_at_eos=False)
    greedy = generate(tiny, prompt, 3, stop_at_eos=False)
    assert torch.equal(top.tokens[0], greedy.tokens[0])  # top-1 sampling is greedy
    everything = generate(tiny, prompt, 3, temperature=1.0, top_k=tiny.cfg.d_vocab, stop_at_eos=False)
    plain = generate(tiny, prompt, 3, temperature=1.0, stop_at_eos=False)  # seed None: 0
    assert torch.equal(everything.tokens[0], plain.tokens[0])


def test_a_temperature_too_small_to_sample_with_is_named(tiny, prompt):
    refused(
        tiny,
        prompt,
        r"temperature=1e-300 is too small to sample with",
        through_generate=True,
        temperature=1e-300,
    )


@pytest.mark.parametrize("name", ["stop_at_eos", "use_cache", "return_logits", "progress"])
@pytest.mark.parametrize("value", ["no", 1, None])
def test_switches_are_true_or_false(tiny, prompt, name, value):
    refused(tiny, prompt, rf"{name}={value!r} is not allowed; use True or False", **{name: value})


@pytest.mark.parametrize(
    ("prompts", "match"),
    [
        (
            torch.zeros(0, dtype=torch.long),
            r"prompts has shape \(0,\); every prompt needs at least one token",
        ),
        (torch.zeros(2, 0, dtype=torch.long), r"prompts has shape \(2, 0\)"),
        (torch.ones(2, 2, 3, dtype=torch.long), r"prompts has shape \(2, 2, 3\); use .*\[batch pos\]"),
        (torch.tensor([[5.7, 6.2]]), r"prompts has dtype torch.float32; token ids are integers .* not cast"),
        (torch.tensor([[True, False]]), r"prompts has dtype torch.bool"),
        (
            torch.tensor([[5, 10**6]]),
            r"prompts holds token ids 5 \.\. 1000000, outside the model's vocabulary 0",
        ),
        (torch.tensor([[5, -1]]), r"prompts holds token ids -1 \.\. 5, outside"),
        ([torch.tensor([5, 6]), torch.tensor([7.0])], r"prompts\[1\] has dtype torch.float32"),
        (
            [torch.tensor([5, 6]), torch.tensor([[7]])],
            r"prompts\[1\] has shape \(1, 1\); a list of prompts holds 1-d",
        ),
        ([torch.tensor([5, 6]), torch.tensor([], dtype=torch.long)], r"prompts\[1\] has shape \(0,\)"),
        ([], r"prompts=\[\] is not allowed; use a non-empty string"),
        ("", r"prompts holds ''; use a non-empty string"),
        (["The cat", 3], r"prompts holds 3; use"),
        (7, r"prompts=7 is not allowed"),
    ],
)
def test_prompts(tiny, prompts, match):
    refused(tiny, prompts, match)


def test_prompts_must_fit_the_context_with_their_new_tokens(tiny):
    n_ctx = tiny.cfg.n_ctx
    refused(tiny, torch.full((1, n_ctx + 1), 5), rf"has {n_ctx + 1} tokens; .* context of {n_ctx}", n=1)
    refused(
        tiny,
        [torch.full((3,), 5), torch.full((n_ctx - 2,), 5)],
        rf"The longest prompt has {n_ctx - 2} tokens; with max_new_tokens=3 the sequence would reach "
        rf"{n_ctx + 1} tokens, more than the model's context of {n_ctx} .* Use max_new_tokens <= 2",
        n=3,
    )
    out = generate(tiny, torch.full((1, n_ctx - 2), 5), 2, stop_at_eos=False)  # exactly the context
    assert len(out.tokens[0]) == n_ctx


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            dict(keep="resid_final"),
            r"keep='resid_final' is not allowed; use a list .* keep=\['resid_final'\]",
        ),
        (dict(keep=[3]), r"keep holds 3; use hook point names"),
        (
            dict(keep=["resid_pre.9"]),
            r"keep='resid_pre.9' is not allowed; use 'resid_pre.0' \.\. 'resid_pre.1'",
        ),
        (dict(batching="rows"), r"batching='rows' is not allowed; use 'auto', 'padded' or 'by_length'"),
    ],
)
def test_keep_and_batching(tiny, prompt, kwargs, match):
    refused(tiny, prompt, match, **kwargs)


def test_interventions_must_be_a_list_of_interventions(tiny, prompt):
    steer = Steer(0, torch.zeros(tiny.cfg.d_model))
    refused(
        tiny, prompt, r"interventions takes a list; use interventions=\[Steer\(...\)\]", interventions=steer
    )
    refused(tiny, prompt, r"interventions='steer' is not allowed; use a list", interventions="steer")
    refused(tiny, prompt, r"'steer' is not an intervention; use Steer", interventions=["steer"])


@pytest.mark.parametrize(
    ("positions", "match"),
    [
        (5, r"positions=5 is not allowed; a list of positions, e.g. \[5\]"),
        ("later", r"positions='later' is not allowed; use 'all', 'prompt', 'generated'"),
        ([], r"positions=\[\] is not allowed; use .* a non-empty list"),
        ([-1], r"positions=\[-1\] is not allowed; absolute positions are integers >= 0"),
        ([1.5], r"positions=\[1.5\] is not allowed"),
        ([True], r"positions=\[True\] is not allowed"),
        ([2, 40], r"positions \[40\] are never run: this generation runs positions 0 \.\. 4 "),
    ],
)
def test_positions(tiny, prompt, positions, match):
    item = AblateHeads([(0, 0)])
    item.positions = positions  # as from an untyped caller
    refused(tiny, prompt, match, interventions=[item])


def test_positions_at_the_last_run_position_are_accepted(tiny, prompt):
    """A 4-token prompt and 2 new tokens run positions 0 .. 4 (the last token is only chosen); with
    `keep` it runs too, so position 5 is allowed then."""
    seen = []
    hook = Hook("blocks.0.hook_resid_pre", lambda x, site: seen.append(site.stop), positions=[4])
    generate(tiny, prompt, 2, interventions=[hook])
    assert seen == [5]
    last = Hook("blocks.0.hook_resid_pre", lambda x, site: seen.append(site.start), positions=[5])
    refused(tiny, prompt, r"positions \[5\] are never run", interventions=[last])
    generate(tiny, prompt, 2, interventions=[last], keep=["resid_final"])
    assert seen[-1] == 5


def test_generated_positions_with_one_new_token_change_nothing_and_are_refused(tiny, prompt):
    vector = torch.randn(tiny.cfg.d_model)
    refused(
        tiny, prompt, r"positions='generated' would change nothing: with max_new_tokens=1 the one new token",
        n=1, interventions=[Steer(1, vector, 2.0, "generated")],
    )  # fmt: skip
    # with two new tokens the second is steered
    steered = generate(
        tiny, prompt, 2, interventions=[Steer(1, vector, 2.0, "generated")], return_logits=True
    )
    plain = generate(tiny, prompt, 2, return_logits=True)
    assert torch.equal(steered.step_logits[0][0], plain.step_logits[0][0])
    assert not torch.equal(steered.step_logits[0][1], plain.step_logits[0][1])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda d: untyped(Steer(0, torch.zeros(d)), layer=1.5),
            r"Steer layer 1.5 is not allowed; use an integer 0 \.\. 2",
        ),
        (lambda d: untyped(Steer(0, torch.zeros(d)), layer=True), r"Steer layer True is not allowed"),
        (lambda d: Steer(3, torch.zeros(d)), r"Steer layer 3 is not allowed"),
        (lambda d: Steer(-1, torch.zeros(d)), r"Steer layer -1 is not allowed"),
        (
            lambda d: untyped(Steer(0, torch.zeros(d)), vector=[0.0] * d),
            r"vector is a list; use a float tensor of shape \(80,\)",
        ),
        (lambda d: Steer(0, torch.zeros(3)), r"a steering vector must have shape \(80,\), not \(3,\)"),
        (
            lambda d: untyped(Steer(0, torch.zeros(d)), vector=torch.zeros(1, d)),
            r"a steering vector must have shape \(80,\), not \(1, 80\)",
        ),
        (
            lambda d: untyped(Steer(0, torch.zeros(d)), vector=torch.zeros(d, dtype=torch.long)),
            r"vector has dtype torch.int64; use a floating",
        ),
        (lambda d: Steer(0, torch.full((d,), float("nan"))), r"vector has 80 non-finite entries"),
        (
            lambda d: Steer(0, torch.zeros(d), float("nan")),
            r"multiplier=nan is not allowed; use a finite number",
        ),
        (lambda d: Steer(0, torch.zeros(d), float("-inf")), r"multiplier=-inf is not allowed"),
        (lambda d: untyped(Steer(0, torch.zeros(d)), multiplier="2"), r"multiplier='2' is not allowed"),
    ],
)
def test_steer(tiny, prompt, make, match):
    refused(tiny, prompt, match, interventions=[make(tiny.cfg.d_model)])


@pytest.mark.parametrize(
    ("heads", "match"),
    [
        ([(0,)], r"AblateHeads holds \(0,\); use \(layer, head\) pairs, layer 0 \.\. 1, head 0 \.\. 1"),
        ([(0, 1.0)], r"AblateHeads holds \(0, 1.0\)"),
        ([], r"heads=\[\] is not allowed; use a non-empty list"),
        ("0,1", r"heads='0,1' is not allowed"),
        ([(0, 0), (9, 0)], r"heads \[\(9, 0\)\] are not heads of this model \(2 layers x 2 heads\)"),
    ],
)
def test_ablate_heads(tiny, prompt, heads, match):
    refused(tiny, prompt, match, interventions=[untyped(AblateHeads([(0, 0)]), heads=heads)])


def test_hook(tiny, prompt):
    refused(
        tiny,
        prompt,
        r"Hook name 3 is not allowed; use a hook point name",
        interventions=[untyped(Hook("blocks.0.hook_z", print), name=3)],
    )
    refused(
        tiny,
        prompt,
        r"needs a function fn\(activation, site\)",
        interventions=[untyped(Hook("blocks.0.hook_resid_pre", print), fn=2)],
    )


@pytest.mark.parametrize(
    ("name", "source", "heads", "match"),
    [
        ("blocks.0.attn.hook_z", [0.0], None, r"needs a tensor source, not list"),
        (
            "blocks.0.attn.hook_z",
            torch.zeros(1, 4, 2, 40, dtype=torch.long),
            None,
            r"source has dtype torch.int64",
        ),
        (
            "blocks.0.attn.hook_z",
            torch.zeros(4, 80),
            None,
            r"source has 2 axes; blocks.0.attn.hook_z has 4 \(batch pos head d_head\)",
        ),
        (
            "blocks.0.attn.hook_z",
            torch.zeros(3, 4, 2, 40),
            None,
            r"source has a batch of 3; use 1 or one row per prompt \(1\)",
        ),
        (
            "blocks.0.attn.hook_z",
            torch.zeros(1, 4, 3, 40),
            None,
            r"source has shape \(1, 4, 3, 40\); .* = \(batch, pos, 2, 40\)",
        ),
        ("blocks.0.hook_resid_pre", torch.zeros(4, 81), None, r"= \(batch, pos, 80\)"),
        ("blocks.0.attn.hook_pattern", torch.zeros(3, 4, 4), None, r"\(batch, 2, pos, pos\)"),
        ("blocks.0.attn.hook_z", torch.zeros(1, 0, 2, 40), None, r"source has no positions"),
        (
            "blocks.0.attn.hook_z",
            torch.full((4, 2, 40), float("nan")),
            None,
            r"source holds non-finite values",
        ),
        ("blocks.0.attn.hook_z", torch.zeros(4, 2, 40), [], r"heads=\[\] is not allowed; use None"),
        (
            "blocks.0.attn.hook_z",
            torch.zeros(4, 2, 40),
            [2],
            r"Patch heads \[2\] are not heads of this model",
        ),
        ("blocks.0.hook_resid_pre", torch.zeros(4, 80), [0], r"has no head axis; leave heads=None"),
    ],
)
def test_patch_from(tiny, prompt, name, source, heads, match):
    refused(
        tiny,
        prompt,
        match,
        interventions=[untyped(Patch(name, torch.zeros(1)), source=source, heads=heads)],
    )


def test_nothing_runs_before_every_argument_is_checked(tiny, prompt):
    seen = []
    hook = Hook("blocks.0.hook_resid_pre", lambda x, site: seen.append(site))
    refused(tiny, prompt, r"top_k=0", interventions=[hook], temperature=1.0, top_k=0)
    refused(tiny, prompt, r"heads \[\(9, 0\)\]", interventions=[hook, AblateHeads([(9, 0)])])
    assert seen == []


def test_generate_itself_refuses_what_the_annotations_let_through(tiny, prompt):
    """The values from the issue that pass the annotations, through `generate`: each an InputError
    (on main: TypeError, RuntimeError, IndexError, OverflowError, or a silent run)."""
    d = tiny.cfg.d_model
    cases = [
        (prompt, dict(temperature=float("nan")), r"temperature=nan"),
        (prompt, dict(temperature=1.0, top_k=0), r"top_k=0"),
        (prompt, dict(temperature=1.0, top_k=-1), r"top_k=-1"),
        (prompt, dict(temperature=1.0, seed=2**64), r"seed=18446744073709551616"),
        (torch.zeros(1, 0, dtype=torch.long), {}, r"every prompt needs at least one token"),
        (torch.tensor([[5, 10**6]]), {}, r"outside the model's vocabulary"),
        (torch.tensor([[5, -1]]), {}, r"outside the model's vocabulary"),
        (torch.full((1, tiny.cfg.n_ctx + 1), 5), {}, r"context of 64"),
        (prompt, dict(interventions=[untyped(AblateHeads([(0, 0)]), positions=5)]), r"positions=5"),
        (
            prompt,
            dict(interventions=[untyped(AblateHeads([(0, 0)]), heads=[(0,)])]),
            r"AblateHeads holds \(0,\)",
        ),
        (prompt, dict(interventions=[Steer(0, torch.zeros(d), float("nan"))]), r"multiplier=nan"),
        (prompt, dict(keep="resid_final"), r"keep='resid_final'"),
    ]
    for prompts, kwargs, match in cases:
        refused(tiny, prompts, match, through_generate=True, **kwargs)
