"""The replacement model: its logits are the real model's, and its forwards mean what they say."""

from __future__ import annotations

import pytest
import torch

from interp.base.errors import InputError
from interp.methods.graphs.replacement import Intervention, replacement_model
from methods.graphs.models import random_transcoders

TOKENS = torch.tensor([2, 33, 3, 34, 4, 5, 6, 71])


def real_logits(model, tokens):
    with torch.no_grad():
        return model(tokens[None])[0].float()


def close(a, b, rtol=1e-5):
    return (a - b).abs().max() <= rtol * b.abs().max()


@pytest.mark.parametrize(
    ("architecture", "kind", "point", "fields"),
    [
        ("relu", "transcoder", "ln1.hook_normalized", {}),
        ("topk", "transcoder", "ln1.hook_out", {"k": 4}),
        ("jumprelu", "skip_transcoder", "hook_resid_pre", {}),
    ],
)
def test_every_forward_of_the_replacement_model_gives_the_real_logits(
    tiny_model, architecture, kind, point, fields
):
    """Frozen (features and errors given), local (features recomputed) and spliced (attention live):
    all the real model's logits, each against the bridge's own forward."""
    transcoders = random_transcoders(2, 80, 32, architecture, kind, point, **fields)
    rm = replacement_model(tiny_model, TOKENS, transcoders)
    real = real_logits(tiny_model, TOKENS)
    assert rm.active.shape[0] > 0 and rm.errors.abs().max() > 0.1  # the errors are not trivially zero
    assert close(rm.logits, real)
    assert close(rm.frozen_logits()[0], real)
    for mode in ("local", "spliced"):
        run = rm.intervene([], mode)
        assert close(run.logits, real) and run.flipped == 0


def test_without_error_nodes_the_spliced_model_is_the_transcoders_model(tiny_model):
    """errors='none' runs the real model with each MLP replaced by its transcoder alone: checked against
    forward hooks on the bridge that write the transcoder's output at hook_mlp_out."""
    transcoders = random_transcoders(2, 80, 32)
    rm = replacement_model(tiny_model, TOKENS, transcoders)
    saved = {}

    def read(act, hook):
        saved[hook.layer()] = act

    def write(act, hook):
        return transcoders[hook.layer()](saved[hook.layer()]).to(act.dtype)

    hooks = [(f"blocks.{layer}.ln1.hook_normalized", read) for layer in range(2)]
    hooks += [(f"blocks.{layer}.hook_mlp_out", write) for layer in range(2)]
    with torch.no_grad():
        expected = tiny_model.run_with_hooks(TOKENS[None], fwd_hooks=hooks)[0]
    got = rm.intervene([], "spliced", errors="none").logits
    assert close(got, expected, 1e-4) and not close(got, real_logits(tiny_model, TOKENS), 1e-2)


def test_errors_are_what_the_transcoders_miss(tiny_model):
    transcoders = random_transcoders(2, 80, 32)
    rm = replacement_model(tiny_model, TOKENS, transcoders)
    _, cache = tiny_model.run_with_cache(TOKENS[None])
    for layer, tc in enumerate(transcoders):
        x = cache[f"blocks.{layer}.ln1.hook_normalized"][0]
        expected = cache[f"blocks.{layer}.hook_mlp_out"][0] - tc(x)
        assert close(rm.errors[layer], expected, 1e-4)
        acts = tc.encode(x)
        here = rm.active[rm.active[:, 0] == layer]
        assert torch.equal(here[:, 1:], acts.nonzero())


def test_the_local_model_freezes_attention_and_the_spliced_model_does_not(tiny_model):
    """Ablating the strongest layer-0 feature at the last position: the local model's change differs from
    the spliced model's (LayerNorm and attention respond there), and both differ from no change."""
    rm = replacement_model(tiny_model, TOKENS, random_transcoders(2, 80, 32))
    here = ((rm.active[:, 0] == 0) & (rm.active[:, 1] == len(TOKENS) - 1)).nonzero()[:, 0]
    layer, pos, feature = rm.active[here[rm.activations[here].argmax()]].tolist()
    ablate = [Intervention(layer, pos, feature, 0.0)]
    base = rm.logits[-1]
    local = rm.intervene(ablate, "local").logits[-1]
    spliced = rm.intervene(ablate, "spliced").logits[-1]
    assert not close(local, base, 1e-4) and not close(spliced, base, 1e-4)
    assert not close(local, spliced, 1e-4)


class TestRefusals:
    def test_one_transcoder_per_layer(self, tiny_model):
        with pytest.raises(InputError, match="one per layer"):
            replacement_model(tiny_model, TOKENS, random_transcoders(1, 80))

    def test_a_transcoder_of_another_layer(self, tiny_model):
        transcoders = random_transcoders(2, 80)
        with pytest.raises(InputError, match=r"transcoders\[0\] reads 'blocks.1"):
            replacement_model(tiny_model, TOKENS, transcoders[::-1])

    def test_an_sae(self, tiny_model):
        from interp.dictionaries import make_dictionary

        saes = [
            make_dictionary("relu", d_in=80, d_sae=8, hook_name=f"blocks.{i}.hook_resid_pre")
            for i in range(2)
        ]
        with pytest.raises(InputError, match="is an SAE"):
            replacement_model(tiny_model, TOKENS, saes)

    def test_a_wrong_width(self, tiny_model):
        with pytest.raises(InputError, match="maps 40 -> 40 dims; this model's are 80 -> 80"):
            replacement_model(tiny_model, TOKENS, random_transcoders(2, 40))

    def test_an_intervention_outside_the_prompt(self, tiny_model):
        rm = replacement_model(tiny_model, TOKENS, random_transcoders(2, 80))
        with pytest.raises(InputError, match="outside the prompt"):
            rm.intervene([Intervention(0, 99, 1, 0.0)])
        with pytest.raises(InputError, match="features 0..31"):
            rm.intervene([Intervention(0, 1, 32, 0.0)])
        with pytest.raises(InputError, match="errors='none' is for 'spliced'"):
            rm.intervene([], "local", errors="none")


def test_transcoders_on_another_device_are_refused(tiny_model):
    transcoders = random_transcoders(2, 80)
    transcoders[1] = transcoders[1].to("meta")
    with pytest.raises(InputError, match=r"transcoders\[1\] is on meta, the model on cpu"):
        replacement_model(tiny_model, TOKENS, transcoders)


def test_the_frozen_model_is_linear_in_the_features(tiny_model):
    """frozen_logits at activations a and b: the change is additive (the features' writes and nothing
    else respond), and at the prompt's activations it is the real model."""
    rm = replacement_model(tiny_model, TOKENS, random_transcoders(2, 80))
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, rm.active.shape[0], generator=g)
    base = rm.frozen_logits(torch.zeros(1, rm.active.shape[0]))
    both = rm.frozen_logits((a + b)[None]) - base
    apart = (rm.frozen_logits(a[None]) - base) + (rm.frozen_logits(b[None]) - base)
    assert close(both, apart, 1e-4)


def test_a_non_finite_value_is_refused(tiny_model):
    rm = replacement_model(tiny_model, TOKENS, random_transcoders(2, 80))
    with pytest.raises(InputError, match="finite"):
        rm.intervene([Intervention(0, 0, 0, float("nan"))])
