"""The DAS direction as a steering vector (das_steer), on the construction of test_probes_das.py.

Ground truth: the answer at the last token follows the sign of the cue's projection onto r, and
DAS's rank-1 subspace at the cue position is r. Steering the cue position of prompts of one class
along the learned direction, by the class means' difference, must move their answer to the other
class; a random unit vector scaled to the same norm must not.
"""

from __future__ import annotations

import pytest
import torch

from interp.base.errors import InputError
from interp.methods.generation import generate
from interp.methods.interventions import Steer
from interp.methods.representations.das import das_steer, fit_das
from methods.representations.planted import ANSWER, WRONG, planted_pairs, planted_prompts

HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture(scope="module")
def das(planted):
    model, _ = planted
    base, source, targets = planted_pairs(320, seed=5)
    return fit_das(model, base, source, [ANSWER, WRONG], targets, HOOK, position=1, epochs=30, lr=0.05)


def _answer_diff(model, tokens, steer=None) -> torch.Tensor:
    """logit(ANSWER) - logit(WRONG) of the first generated token, with `steer` applied."""
    out = generate(
        model, tokens, 1, interventions=[steer] if steer else [], return_logits=True, stop_at_eos=False
    )
    first = torch.stack([logits[0] for logits in out.step_logits])
    return first[:, ANSWER] - first[:, WRONG]


def test_steering_along_the_das_direction_moves_the_answer(planted, das):
    model, r = planted
    tokens, labels = planted_prompts(96, seed=11)
    corrupted = tokens[labels == 0]  # their answer is WRONG (target class 1)
    steer = das_steer(das, toward=0, away=1)
    assert steer.layer == 1 and steer.positions == [1]
    norm = steer.vector.norm()
    g = torch.Generator().manual_seed(0)
    random = torch.randn(model.cfg.d_model, generator=g)
    random_steer = Steer(layer=1, vector=norm * random / random.norm(), positions=[1])
    clean_diff = _answer_diff(model, corrupted)
    steered_diff = _answer_diff(model, corrupted, steer)
    random_diff = _answer_diff(model, corrupted, random_steer)
    print(
        f"vector norm {norm:.2f}, cosine with r {(steer.vector @ r / norm).item():.3f}; answer moved to "
        f"ANSWER in {(steered_diff > 0).float().mean():.3f} (DAS) vs {(random_diff > 0).float().mean():.3f} "
        f"(random); mean logit diff {clean_diff.mean():.2f} -> {steered_diff.mean():.2f} / {random_diff.mean():.2f}"
    )
    assert (clean_diff < 0).all()
    assert (steered_diff > 0).float().mean() >= 0.95
    assert (random_diff > 0).float().mean() <= 0.2
    assert (steered_diff - clean_diff).mean() > 3 * (random_diff - clean_diff).abs().mean()
    # and back: clean prompts steered toward class 1 lose their answer
    back = _answer_diff(model, tokens[labels == 1], das_steer(das, toward=1))
    assert (back < 0).float().mean() >= 0.95
    # the multiplier scales the vector, so a zero multiplier changes nothing
    unchanged = _answer_diff(model, corrupted, das_steer(das, toward=0, multiplier=0.0))
    assert torch.allclose(unchanged, clean_diff, atol=1e-4)


def test_das_steer_refuses_what_cannot_steer(planted, das):
    with pytest.raises(InputError, match="toward=2"):
        das_steer(das, toward=2)
    with pytest.raises(InputError, match="both 0"):
        das_steer(das, toward=0, away=0)
    from dataclasses import replace

    with pytest.raises(InputError, match="from the end"):
        das_steer(replace(das, position=-1), toward=0)
    assert das_steer(replace(das, position=-1), toward=0, positions=[3]).positions == [3]
    with pytest.raises(InputError, match="cannot steer"):
        das_steer(replace(das, hook="blocks.1.attn.hook_z"), toward=0)
    assert das_steer(replace(das, hook="blocks.1.hook_resid_post"), toward=0).layer == 2
