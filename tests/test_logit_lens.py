"""The logit lens (interp.methods.logit_lens): its last reading is the model's own output."""

from __future__ import annotations

import pytest
import torch
from helpers import ioi_pairs

from interp.data.tokens import str_tokens
from interp.methods.direct_logit_attribution import direct_logit_attribution
from interp.methods.logit_lens import logit_lens
from interp.toy.vocab import TRAIN_TEMPLATES


@pytest.fixture(scope="module")
def mixed_pairs(toy_model):
    return ioi_pairs(toy_model.tokenizer, 8, seed=8, templates=TRAIN_TEMPLATES[:60])


class TestLogitLens:
    def test_last_layer_equals_the_model_output(self, toy_model, mixed_pairs):
        lens = logit_lens(toy_model, mixed_pairs)
        dla = direct_logit_attribution(toy_model, mixed_pairs)
        assert lens.labels[0] == "embed" and len(lens.labels) == toy_model.cfg.n_layers + 1
        assert torch.allclose(lens.logit_diff[-1], dla.logit_diff, atol=1e-4)
        assert (lens.answer_rank[-1] == 0).float().mean() >= 0.9  # the toy model gets IOI right
        assert lens.top_tokens[-1][0][0][0] == toy_model.tokenizer.decode([int(mixed_pairs.answer[0])])

    def test_the_final_reading_is_the_final_logits(self, toy_model, mixed_pairs):
        lens = logit_lens(toy_model, mixed_pairs, k=3)
        with torch.no_grad():
            final = mixed_pairs.at_final(toy_model(mixed_pairs.clean_tokens))
        top = final[:, : len(toy_model.tokenizer)].softmax(-1).topk(3)
        for prompt in range(len(mixed_pairs)):
            assert [t for t, _ in lens.top_tokens[-1][prompt]] == str_tokens(
                toy_model.tokenizer, top.indices[prompt]
            )

    def test_refuses_attached_hooks(self, toy_model, mixed_pairs):
        with toy_model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: x * 0)]):
            with pytest.raises(RuntimeError, match="hooks attached"):
                logit_lens(toy_model, mixed_pairs)
