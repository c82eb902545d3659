"""Head pattern scores: exact on patterns built by construction, and on the toy model's heads."""

from __future__ import annotations

import pytest
import torch

from interp.methods.head_scores import head_scores, repeated_random_tokens, scores_from_patterns, top_heads


def pattern_attending(offsets: list[int | None], n_pos: int) -> torch.Tensor:
    """One layer, one prompt, a head per offset: each dest attends to dest - offset.

    Positions too early for their offset attend to themselves; offset None attends to position 0.
    """
    patterns = torch.zeros(1, 1, len(offsets), n_pos, n_pos)
    for head, offset in enumerate(offsets):
        for dest in range(n_pos):
            src = 0 if offset is None else (dest - offset if dest >= offset else dest)
            patterns[0, 0, head, dest, src] = 1.0
    return patterns


class TestScoresByConstruction:
    SEQ_LEN = 6

    def test_each_constructed_head_scores_one_on_its_own_score(self):
        # heads: previous token, induction (seq_len - 1 back), duplicate (seq_len back), first token
        patterns = pattern_attending([1, self.SEQ_LEN - 1, self.SEQ_LEN, None], 2 * self.SEQ_LEN)
        scores = scores_from_patterns(patterns, self.SEQ_LEN)
        assert scores["previous_token"][0].tolist() == pytest.approx([1, 0, 0, 1 / 11])
        assert scores["induction"][0].tolist() == pytest.approx([0, 1, 0, 0])
        assert scores["duplicate_token"][0].tolist() == pytest.approx([0, 0, 1, 1 / 6])  # dest 6 -> src 0
        assert scores["first_token"][0].tolist() == pytest.approx([1 / 11, 1 / 11, 1 / 11, 1])

    def test_uniform_attention_scores_the_average(self):
        n_pos = 2 * self.SEQ_LEN
        patterns = torch.tril(torch.ones(n_pos, n_pos))
        patterns = (patterns / patterns.sum(-1, keepdim=True)).expand(1, 1, 1, n_pos, n_pos)
        expected = torch.tensor([1 / (p + 1) for p in range(self.SEQ_LEN, n_pos)]).mean()
        assert scores_from_patterns(patterns, self.SEQ_LEN)["induction"].item() == pytest.approx(
            expected.item()
        )


def test_repeated_tokens_repeat_and_use_real_tokens_only(toy_model):
    tokens = repeated_random_tokens(toy_model, n_prompts=4, seq_len=10, seed=3)
    assert tokens.shape == (4, 20)
    assert torch.equal(tokens[:, :10], tokens[:, 10:])
    assert tokens.min() >= 2 and tokens.max() < len(toy_model.tokenizer)  # no specials, no padded ids


def test_top_heads_orders_by_score():
    scores = torch.tensor([[0.1, 0.9], [0.5, 0.2]])
    assert top_heads(scores, 2) == [(0, 1, pytest.approx(0.9)), (1, 0, pytest.approx(0.5))]


class TestToyCircuits:
    """The toy model's card names an induction head and an earlier previous-token head."""

    def test_induction_head_and_earlier_previous_token_head(self, toy_model):
        scores = head_scores(toy_model, n_prompts=32, seq_len=20, seed=7)
        ind_layer, ind_head, ind_score = top_heads(scores["induction"], 1)[0]
        prev_layer, _, prev_score = top_heads(scores["previous_token"], 1)[0]
        print(
            f"induction L{ind_layer}H{ind_head} {ind_score:.3f}; previous-token L{prev_layer} {prev_score:.3f}"
        )
        assert ind_score >= 0.4
        assert prev_layer < ind_layer and prev_score >= 0.4


def test_refuses_attached_hooks(toy_model):
    import pytest

    from interp.methods.head_scores import head_scores

    with toy_model.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", lambda x, hook: x * 0)]):
        with pytest.raises(RuntimeError, match="head scores"):
            head_scores(toy_model, n_prompts=2, seq_len=5)
