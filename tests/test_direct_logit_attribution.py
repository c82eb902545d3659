"""DLA sums to the logit difference, agrees across weight modes, and finds a head built to write the answer."""

from __future__ import annotations

import einops
import pytest
import torch
from helpers import ANSWER, CUE_CLEAN, CUE_CORRUPTED, WRONG, ioi_pairs, save_answer_head_dir

from interp.data.prompts import PromptPairs
from interp.methods.ablation import ablation_sweep
from interp.methods.activation_patching import sweep
from interp.methods.direct_logit_attribution import direct_logit_attribution, neuron_attribution
from interp.methods.head_scores import top_heads
from interp.model.loading import load_model
from interp.toy.vocab import TRAIN_TEMPLATES


@pytest.fixture(scope="module")
def mixed_pairs(toy_model):
    return ioi_pairs(toy_model.tokenizer, 8, seed=8, templates=TRAIN_TEMPLATES[:60])


class TestDirectLogitAttribution:
    @pytest.mark.parametrize("weights", ["raw", "folded"])
    def test_components_plus_constants_sum_to_the_logit_difference(self, weights, tiny_phi_dir):
        model = load_model(tiny_phi_dir, weights=weights)
        pairs = ioi_pairs(model.tokenizer, 5, seed=3, templates=TRAIN_TEMPLATES[:60])
        dla = direct_logit_attribution(model, pairs)
        assert (dla.total() - dla.logit_diff).abs().max() <= 1e-4
        assert dla.logit_diff.abs().min() > 1e-3  # a real test: the sum is not trivially 0

    def test_sums_on_the_toy_model_with_mixed_lengths(self, toy_model, mixed_pairs):
        assert not mixed_pairs.same_length
        dla = direct_logit_attribution(toy_model, mixed_pairs)
        assert (dla.total() - dla.logit_diff).abs().max() <= 1e-4

    def test_raw_and_folded_agree_up_to_documented_moves(self, tiny_phi_dir):
        """Folding moves value biases from heads into the layer bias and the LN bias into b_U."""
        raw = direct_logit_attribution(load_model(tiny_phi_dir), ioi_pairs_for(tiny_phi_dir))
        folded = direct_logit_attribution(
            load_model(tiny_phi_dir, weights="folded"), ioi_pairs_for(tiny_phi_dir)
        )
        assert torch.allclose(raw.logit_diff, folded.logit_diff, atol=1e-4)
        assert torch.allclose(raw.attn, folded.attn, atol=1e-4)  # whole attention layers
        assert torch.allclose(raw.mlp, folded.mlp, atol=1e-4)
        assert torch.allclose(raw.embed, folded.embed, atol=1e-4)
        assert torch.allclose(raw.ln_bias + raw.unembed_bias, folded.ln_bias + folded.unembed_bias, atol=1e-4)
        assert folded.ln_bias.abs().max() < 1e-5

    def test_per_prompt_values_put_the_batch_first(self, toy_model, mixed_pairs):
        """Row i of every per-prompt field is prompt i's own DLA (as in TransformerLens, batch first)."""
        dla = direct_logit_attribution(toy_model, mixed_pairs)
        cfg, n = toy_model.cfg, len(mixed_pairs)
        assert n not in (cfg.n_layers, cfg.n_heads)  # the batch axis could not be mistaken for another
        assert dla.heads.shape == (n, cfg.n_layers, cfg.n_heads)
        assert dla.attn_bias.shape == dla.mlp.shape == dla.attn.shape == (n, cfg.n_layers)
        for i in (0, n - 1):
            alone = direct_logit_attribution(toy_model, mixed_pairs.select([i]))
            for field in ("heads", "attn_bias", "mlp", "embed", "logit_diff"):
                mine, own = getattr(dla, field)[i], getattr(alone, field)[0]
                assert (mine - own).abs().max() <= 1e-4 * (1 + own.abs().max()), field

    def test_neuron_attributions_add_up_to_the_mlp(self, toy_model, mixed_pairs):
        dla = direct_logit_attribution(toy_model, mixed_pairs)
        for layer in range(toy_model.cfg.n_layers):
            per_neuron, top = neuron_attribution(toy_model, mixed_pairs, layer, k=5)
            bias_part = dla.mlp[:, layer].mean() - per_neuron.sum()  # what fc2's bias writes
            w = toy_model.original_model.model.layers[layer].mlp.fc2.bias
            assert len(top) == 5 and abs(top[0][1]) >= abs(top[-1][1])
            assert bias_part.abs() <= 10 * w.abs().max() + 1e-3


def ioi_pairs_for(directory):
    from interp.toy.train import make_tokenizer

    return ioi_pairs(make_tokenizer(), 5, seed=3, templates=TRAIN_TEMPLATES[:60])


class TestModelBuiltByConstruction:
    """Head L1H1 alone writes the answer direction; every method must rank it first."""

    @pytest.fixture(scope="class")
    def built(self, tmp_path_factory):
        model = load_model(save_answer_head_dir(tmp_path_factory.mktemp("answer_head")))
        base = torch.randint(30, 120, (6, 9), generator=torch.Generator().manual_seed(0))
        clean, corrupted = base.clone(), base.clone()
        clean[:, 3], corrupted[:, 3] = CUE_CLEAN, CUE_CORRUPTED
        n = len(base)
        pairs = PromptPairs(
            clean, corrupted, torch.full((n,), 9), torch.full((n,), ANSWER), torch.full((n,), WRONG)
        )
        return model, pairs

    def test_behaviour(self, built):
        model, pairs = built
        dla = direct_logit_attribution(model, pairs)
        assert (dla.logit_diff > 1).all()
        assert (direct_logit_attribution(model, pairs, which="corrupted").logit_diff < -1).all()

    def test_dla_ranks_it_first(self, built):
        model, pairs = built
        heads = direct_logit_attribution(model, pairs).heads.mean(0)
        assert top_heads(heads, 1)[0][:2] == (1, 1)

    @pytest.mark.parametrize("method", ["zero", "mean", "resample"])
    def test_ablation_ranks_it_first(self, built, method):
        model, pairs = built
        effect = ablation_sweep(model, pairs, method).values
        assert top_heads(-effect, 1)[0][:2] == (1, 1)

    def test_patching_ranks_it_first(self, built):
        model, pairs = built
        assert top_heads(sweep(model, pairs, "head_out").values, 1)[0][:2] == (1, 1)


def test_refuses_attached_hooks_rather_than_mixing_them_in(toy_model, mixed_pairs):
    """Values changed 22.07 -> -7.50 under a user hook before; now every method refuses."""
    with toy_model.hooks(fwd_hooks=[("blocks.3.attn.hook_z", lambda z, hook: z * 0)]):
        with pytest.raises(RuntimeError, match="hooks attached"):
            direct_logit_attribution(toy_model, mixed_pairs)
        with pytest.raises(RuntimeError, match="hooks attached"):
            neuron_attribution(toy_model, mixed_pairs, 0)


def test_runner_units_are_the_api_result_with_the_batch_moved_last():
    """The runner stores per-prompt values as `[...dims, batch]`; its DLA units are the API's batch-first result."""
    from interp.runner.config import parse_config
    from interp.runner.worker import UnitWorker, compute_unit

    config = {
        "seed": 1,
        "task": {"name": "ioi", "n_pairs": 5},
        "analysis": [{"kind": "dla_head"}, {"kind": "dla_layer"}],
    }
    worker = UnitWorker(parse_config(config))
    dla = direct_logit_attribution(worker.model, worker.pairs)

    def unit(kind):
        return compute_unit(worker.by_label[kind], worker.model, worker.pairs, worker.config).values

    assert torch.equal(unit("dla_head"), einops.rearrange(dla.heads, "batch layer head -> layer head batch"))
    expected = torch.stack([dla.attn.T, dla.mlp.T], dim=1)  # layer component batch
    assert torch.equal(unit("dla_layer"), expected)
