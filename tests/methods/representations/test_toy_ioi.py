"""Where the toy's IOI variable lives (the toy card's "Representations" section holds these numbers).

480 prompts from the toy's held-out frames ending "{S} <verb> a {OBJ} to", 8 names, one token length
(`interp.data.tasks.ioi_labels`). Label: which of the 8 names is the indirect object (chance 0.125).
DAS pairs each prompt with its swapped twin (the second subject mention replaced by the IO, so the
answer becomes the subject) and learns a rank-2 subspace whose interchange from the twin moves the
answer; held-out pairs, against a random subspace of the same rank.

Found: at the last position the IO is only partly readable before layer 3 (its name mover L3H2)
and fully after it, and interchanging the last position moves the answer only after layer 3: the
choice of name is not made at the last position's residual stream before the name mover reads the
context. At the second subject mention (S2) the IO is readable from layer 1 on, and interchanging
S2 moves the answer at the inputs of layers 0 and 1 only: after the previous-token head L1H0 the
information has left S2 (for the next position).
"""

from __future__ import annotations

import pytest

from interp.data.tasks.ioi_labels import S2_POSITION, ioi_labels
from interp.methods.representations.das import fit_das
from interp.methods.representations.probes import probe_layers

HOOKS = [f"blocks.{layer}.hook_resid_pre" for layer in range(4)] + ["blocks.3.hook_resid_post"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(toy_model):
    return ioi_labels(toy_model, 480, seed=0)


def test_io_identity_is_readable_at_the_last_position_only_after_the_name_mover(toy_model, data):
    last = probe_layers(toy_model, data.prompts, data.io, HOOKS)
    at_s2 = probe_layers(toy_model, data.prompts, data.io, HOOKS, position=S2_POSITION)
    print("last", last.accuracy.tolist(), "S2", at_s2.accuracy.tolist())
    print("shuffled", last.shuffled_accuracy.tolist(), at_s2.shuffled_accuracy.tolist())
    assert last.accuracy[0] <= 0.25  # the last token is " to" in every prompt
    assert (last.accuracy[1:4] >= 0.35).all() and (last.accuracy[1:4] <= 0.8).all()
    assert last.accuracy[4] >= 0.95
    assert at_s2.accuracy[0] <= 0.25 and (at_s2.accuracy[1:] >= 0.95).all()
    assert (last.shuffled_accuracy <= 0.25).all() and (at_s2.shuffled_accuracy <= 0.25).all()


def _das(model, data, hook, position):
    return fit_das(
        model, data.prompts, data.swapped, data.answers, data.s, hook, position, rank=2, epochs=10, lr=0.01
    )


def test_the_answer_is_interchangeable_at_the_last_position_only_after_layer_3(toy_model, data):
    before = _das(toy_model, data, "blocks.3.hook_resid_pre", -1)
    after = _das(toy_model, data, "blocks.3.hook_resid_post", -1)
    print("last position, rank 2:", before.to_dict(), after.to_dict())
    assert before.accuracy <= 0.05 and before.random_accuracy <= 0.05
    assert after.accuracy >= 0.5 and after.random_accuracy <= 0.05


def test_s2_is_interchangeable_until_the_previous_token_head_has_read_it(toy_model, data):
    layer1 = _das(toy_model, data, "blocks.1.hook_resid_pre", S2_POSITION)
    layer2 = _das(toy_model, data, "blocks.2.hook_resid_pre", S2_POSITION)
    print("S2, rank 2:", layer1.to_dict(), layer2.to_dict())
    assert layer1.accuracy >= 0.5 and layer1.random_accuracy <= 0.05
    assert layer2.accuracy <= 0.05
