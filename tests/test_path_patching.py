"""Path patching: exact reference via hooks, and invariants."""

from __future__ import annotations

import pytest
import torch
from helpers import ioi_pairs

from interp.data.metrics import make_metric
from interp.methods.activation_patching import sweep
from interp.methods.path_patching import path_patch
from interp.model.hooks import active_hook_count


@pytest.fixture(scope="module")
def pairs(toy_model):
    return ioi_pairs(toy_model.tokenizer, 4, seed=31)


def reference_path_patch(model, pairs, sender, receiver, part):
    """Wang et al.'s two runs, written with the bridge's hooks (noising: base = clean)."""
    n_layers = model.cfg.n_layers
    z_names = [f"blocks.{layer}.attn.hook_z" for layer in range(n_layers)]
    _, clean = model.run_with_cache(pairs.clean_tokens, names_filter=z_names)
    _, corrupted = model.run_with_cache(pairs.corrupted_tokens, names_filter=z_names)

    def freeze(layer):
        def hook(z, hook):
            out = clean[f"blocks.{layer}.attn.hook_z"].clone()
            if layer == sender[0]:
                out[:, :, sender[1]] = corrupted[f"blocks.{layer}.attn.hook_z"][:, :, sender[1]]
            return out

        return hook

    receiver_hook = f"blocks.{receiver[0]}.attn.hook_{part}"
    captured = {}

    def capture(act, hook):
        captured["x"] = act.clone()

    with model.hooks(
        fwd_hooks=[(name, freeze(layer)) for layer, name in enumerate(z_names)] + [(receiver_hook, capture)]
    ):
        model(pairs.clean_tokens)

    def replace(act, hook):
        out = act.clone()
        out[:, :, receiver[1]] = captured["x"][:, :, receiver[1]]
        return out

    with torch.no_grad(), model.hooks(fwd_hooks=[(receiver_hook, replace)]):
        logits = model(pairs.clean_tokens)[:, -1]
    clean_logits = model(pairs.clean_tokens)[:, -1]
    return make_metric("logit_diff", pairs.answer, pairs.wrong, clean_logits)(
        logits, torch.arange(len(pairs))
    ).mean()


@pytest.mark.parametrize("part", ["q", "k", "v"])
def test_single_path_equals_the_hook_reference(toy_model, pairs, part):
    result = path_patch(toy_model, pairs, [(3, 0)], receiver_input=part, senders=[(1, 1)])
    expected = reference_path_patch(toy_model, pairs, (1, 1), (3, 0), part)
    assert result.values.item() == pytest.approx(expected.item(), abs=1e-4)
    assert active_hook_count(toy_model) == 0


def test_sweep_over_senders_equals_one_at_a_time(toy_model, pairs):
    sweep_result = path_patch(toy_model, pairs, [(3, 0), (3, 2)], receiver_input="v")
    for sender in [(0, 0), (1, 3), (2, 1)]:
        single = path_patch(toy_model, pairs, [(3, 0), (3, 2)], receiver_input="v", senders=[sender])
        assert sweep_result.values[sender].item() == pytest.approx(single.values.item(), abs=1e-5)
    # heads that cannot send (at or after the receiver's layer) have no effect: the base metric
    assert not sweep_result.extra["valid"][3].any() and (sweep_result.effect()[3] == 0).all()


def test_last_layer_senders_to_logits_equal_head_patching(toy_model, pairs):
    """With nothing downstream to freeze, path = total effect for last-layer heads."""
    paths = path_patch(toy_model, pairs, "logits")
    total = sweep(toy_model, pairs, "head_out", direction="noising")
    assert torch.allclose(paths.values[-1], total.values[-1], atol=1e-4)
    assert paths.clean == pytest.approx(total.clean)


def test_no_senders_gives_the_base_metric(toy_model, pairs):
    result = path_patch(toy_model, pairs, "logits", senders=[])
    assert result.values.item() == pytest.approx(result.clean, abs=1e-4)


def test_senders_after_receivers_are_refused(toy_model, pairs):
    with pytest.raises(ValueError, match="not before the earliest receiver"):
        path_patch(toy_model, pairs, [(1, 0)], senders=[(2, 0)])
