"""The dictionary interface and each architecture's activation against the formula it implements."""

from __future__ import annotations

import pytest
import torch

from interp.base.errors import InputError
from interp.dictionaries import Dictionary, make_config, make_dictionary, register_architecture
from interp.dictionaries import registry as registry_module
from interp.dictionaries.architectures.jumprelu import JumpReLUConfig
from interp.dictionaries.base import ENCODER_INIT_NORM, DictionaryConfig

ARCHS = {"relu": {}, "topk": {"k": 4}, "batchtopk": {"k": 4}, "jumprelu": {}}


def randomized(dictionary: Dictionary, seed: int = 3) -> Dictionary:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in dictionary.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return dictionary


class TestInterface:
    @pytest.mark.parametrize("arch", ARCHS)
    def test_forward_is_decode_of_encode_and_shapes(self, arch):
        d = randomized(
            make_dictionary(arch, d_in=12, d_sae=40, hook_name="blocks.1.hook_resid_pre", **ARCHS[arch])
        )
        x = torch.randn(3, 5, 12)
        acts = d.encode(x)
        assert acts.shape == (3, 5, 40) and acts.dtype == torch.float32 and (acts >= 0).all()
        torch.testing.assert_close(d(x), acts @ d.W_dec + d.b_dec)
        assert d.d_in == 12 and d.d_sae == 40 and d.d_out == 12
        assert d.hook_name == d.hook_name_out == "blocks.1.hook_resid_pre" and d.kind == "sae"

    def test_sae_subtracts_b_dec_before_encoding_and_transcoder_does_not(self):
        sae = randomized(make_dictionary("relu", d_in=6, d_sae=10))
        x = torch.randn(4, 6)
        torch.testing.assert_close(sae.pre_acts(x), (x - sae.b_dec) @ sae.W_enc + sae.b_enc)
        tc = randomized(make_dictionary("relu", d_in=6, d_sae=10, kind="transcoder", d_out=3))
        torch.testing.assert_close(tc.pre_acts(x), x @ tc.W_enc + tc.b_enc)

    def test_skip_transcoder_adds_the_linear_skip(self):
        d = randomized(
            make_dictionary(
                "topk",
                d_in=6,
                d_sae=10,
                k=2,
                kind="skip_transcoder",
                d_out=4,
                hook_name="a",
                hook_name_out="b",
            )
        )
        x = torch.randn(7, 6)
        assert d.W_skip.shape == (4, 6)
        torch.testing.assert_close(d(x), d.decode(d.encode(x)) + x @ d.W_skip.T)
        assert d.hook_name_out == "b" and d.d_out == 4

    def test_bfloat16_input_gives_float32_latents(self):
        d = make_dictionary("topk", d_in=8, d_sae=16, k=2)
        x = torch.randn(3, 8)
        acts = d.encode(x.to(torch.bfloat16))
        assert acts.dtype == torch.float32 and all(p.dtype == torch.float32 for p in d.parameters())
        torch.testing.assert_close(acts, d.encode(x.to(torch.bfloat16).float()))

    def test_initialisation_is_seeded_with_unit_decoder_rows_and_tied_encoder(self):
        a, b = (
            make_dictionary("topk", d_in=8, d_sae=16, k=2, seed=5),
            make_dictionary("topk", d_in=8, d_sae=16, k=2, seed=5),
        )
        torch.testing.assert_close(a.W_dec, b.W_dec)
        torch.testing.assert_close(a.W_dec.norm(dim=-1), torch.ones(16))
        torch.testing.assert_close(a.W_enc, a.W_dec.T * ENCODER_INIT_NORM)
        assert not torch.equal(a.W_dec, make_dictionary("topk", d_in=8, d_sae=16, k=2, seed=6).W_dec)

    @pytest.mark.parametrize("kind", ["sae", "transcoder", "skip_transcoder"])
    @pytest.mark.parametrize("arch", ARCHS)
    def test_encoder_columns_start_at_encoder_init_norm(self, arch, kind):
        fields = dict(d_in=24, d_sae=48, kind=kind, seed=2, **ARCHS[arch])
        for norm in (0.25, 1.0, 3.0):
            d = make_dictionary(arch, **fields, encoder_init_norm=norm)
            torch.testing.assert_close(d.W_enc.norm(dim=0), torch.full((48,), norm))
            torch.testing.assert_close(d.W_dec.norm(dim=-1), torch.ones(48))  # decoder rows stay unit
            if kind == "sae":
                torch.testing.assert_close(d.W_enc, d.W_dec.T * norm)
        default = make_dictionary(arch, **fields)
        torch.testing.assert_close(default.W_enc.norm(dim=0), torch.full((48,), ENCODER_INIT_NORM))
        assert default.cfg.to_dict()["encoder_init_norm"] == ENCODER_INIT_NORM

    def test_the_default_encoder_norm_is_that_of_a_kaiming_uniform_linear_layer(self):
        """eai-sparsify's encoder is `nn.Linear(d_in, d_sae)` (Kaiming-uniform, bound 1/sqrt(d_in)):
        its rows, our columns, have an expected squared norm of 1/3 whatever d_in."""
        torch.manual_seed(0)
        for d_in in (64, 512):
            linear = torch.nn.Linear(d_in, 4096)
            rms_norm = float(linear.weight.detach().pow(2).sum(-1).mean().sqrt())
            assert rms_norm == pytest.approx(ENCODER_INIT_NORM, rel=0.01)


class TestConfigErrors:
    def test_bad_values_are_refused_by_name(self):
        with pytest.raises(InputError, match="kind="):
            make_dictionary("relu", d_in=4, d_sae=8, kind="crosscoder")
        with pytest.raises(InputError, match="apply_b_dec_to_input=True is refused for a transcoder"):
            make_dictionary("relu", d_in=4, d_sae=8, kind="transcoder", apply_b_dec_to_input=True)
        with pytest.raises(InputError, match="hook_name_out=.*only for transcoders"):
            make_dictionary("relu", d_in=4, d_sae=8, hook_name="a", hook_name_out="b")
        with pytest.raises(InputError, match="k=9"):
            make_dictionary("topk", d_in=4, d_sae=8, k=9)
        for bad in (0.0, -1.0, float("inf"), float("nan")):
            with pytest.raises(InputError, match="encoder_init_norm=.*finite number > 0"):
                make_dictionary("topk", d_in=4, d_sae=8, k=2, encoder_init_norm=bad)
        with pytest.raises(InputError, match="d_sae=0"):
            make_dictionary("topk", d_in=4, d_sae=0)
        with pytest.raises(InputError, match="has no field.*l1_coefficient"):
            make_dictionary("topk", d_in=4, d_sae=8, l1_coefficient=1.0)
        with pytest.raises(InputError, match="Unknown dictionary architecture 'gated'.*topk"):
            make_dictionary("gated", d_in=4, d_sae=8)

    def test_wrong_config_class_is_refused(self):
        from interp.dictionaries.architectures.topk import TopKDictionary

        with pytest.raises(InputError, match="takes a TopKConfig"):
            TopKDictionary(JumpReLUConfig(d_in=4, d_sae=8))


class TestRegistry:
    def test_a_new_architecture_is_one_class_and_one_registration(self, monkeypatch):
        monkeypatch.setattr(registry_module, "_ARCHITECTURES", dict(registry_module._ARCHITECTURES))

        from dataclasses import dataclass

        @dataclass
        class AbsConfig(DictionaryConfig):
            architecture = "abs_test"

        @register_architecture
        class AbsDictionary(Dictionary):
            config_class = AbsConfig

            def activate(self, pre):
                return pre.abs()

        d = make_dictionary("abs_test", d_in=3, d_sae=5)
        assert isinstance(d, AbsDictionary) and "abs_test" in registry_module.architectures()
        x = torch.randn(2, 3)
        torch.testing.assert_close(d.encode(x), d.pre_acts(x).abs())
        assert isinstance(make_config("abs_test", d_in=3, d_sae=5), AbsConfig)


class TestActivations:
    def test_topk_keeps_each_rows_k_largest_relu(self):
        d = randomized(make_dictionary("topk", d_in=8, d_sae=30, k=5))
        x = torch.randn(50, 8)
        pre, acts = d.pre_acts(x), d.encode(x)
        for row_pre, row_acts in zip(pre, acts, strict=True):
            top = row_pre.topk(5).indices
            expected = torch.zeros(30)
            expected[top] = row_pre[top].relu()
            torch.testing.assert_close(row_acts, expected)

    def test_topk_rescale_by_decoder_norm_selects_on_scaled_and_decodes_unscaled(self):
        d = randomized(make_dictionary("topk", d_in=8, d_sae=30, k=5, rescale_acts_by_decoder_norm=True))
        x = torch.randn(20, 8)
        norms = d.W_dec.norm(dim=-1)
        scaled = d.pre_acts(x) * norms
        top = scaled.topk(5, dim=-1)
        expected = torch.zeros(20, 30).scatter(-1, top.indices, top.values.relu())
        torch.testing.assert_close(d.encode(x), expected)
        torch.testing.assert_close(d(x), (expected / norms) @ d.W_dec + d.b_dec)

    def test_jumprelu_is_relu_times_step_per_latent(self):
        d = randomized(make_dictionary("jumprelu", d_in=8, d_sae=30))
        with torch.no_grad():
            d.threshold.copy_(torch.rand(30))
        x = torch.randn(40, 8)
        pre = d.pre_acts(x)
        torch.testing.assert_close(d.encode(x), pre.relu() * (pre > d.threshold).float())
        torch.testing.assert_close(d.train_activate(pre), d.encode(x))

    def test_jumprelu_pseudo_derivatives(self):
        """Threshold gradients of the jump and of the L0 term are the paper's rectangle-kernel
        estimators; the input's gradient is that of pre * H(pre - theta)."""
        d = make_dictionary("jumprelu", d_in=2, d_sae=3, bandwidth=0.5, l0_coefficient=1.0)
        with torch.no_grad():
            d.threshold.copy_(torch.tensor([1.0, 1.0, 2.0]))
        pre = torch.tensor([[1.1, 0.5, 2.4], [1.3, 1.2, 1.0]], requires_grad=True)
        d.train_activate(pre).sum().backward()
        # |pre - theta| < eps/2 = 0.25: (1.1, 1.0) and (1.2, 1.0) only -> -(theta/eps) * 1
        torch.testing.assert_close(d.threshold.grad, torch.tensor([-2.0, -2.0, 0.0]))
        torch.testing.assert_close(pre.grad, torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]))
        d.threshold.grad = None
        losses = d.extra_losses(
            pre, pre, torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(3, dtype=torch.bool), 0
        )
        losses["l0"].backward()
        # mean over 2 tokens of -(1/eps) per kernel hit
        torch.testing.assert_close(d.threshold.grad, torch.tensor([-1.0, -1.0, 0.0]))

    def test_batchtopk_keeps_the_batch_largest_and_learns_its_threshold(self):
        d = randomized(make_dictionary("batchtopk", d_in=8, d_sae=30, k=3, threshold_lr=0.5))
        x = torch.randn(20, 8)
        pre = d.pre_acts(x).detach()
        kept = d.train_activate(pre)
        assert int((kept > 0).sum()) == 60
        smallest = pre.flatten().topk(60).values.min()
        assert (pre[kept > 0] >= smallest).all() and (pre[(kept == 0) & (pre > 0)] <= smallest).all()
        torch.testing.assert_close(d.threshold, torch.full((30,), float(smallest)))  # first batch: its value
        pre2 = d.pre_acts(torch.randn(20, 8)).detach()
        smallest2 = pre2.flatten().topk(60).values.min()
        d.train_activate(pre2)
        torch.testing.assert_close(
            d.threshold, torch.full((30,), 0.5 * float(smallest) + 0.5 * float(smallest2))
        )
        # inference: one JumpReLU threshold for every latent, independent of the batch
        torch.testing.assert_close(d.encode(x), pre.relu() * (pre > d.threshold).float())
        torch.testing.assert_close(d.encode(x[:1]), d.encode(x)[:1])

    def test_relu_l1_weighs_activations_by_decoder_norms(self):
        d = randomized(make_dictionary("relu", d_in=8, d_sae=30, l1_coefficient=0.7, l1_warmup_steps=4))
        x = torch.randn(10, 8)
        acts = d.encode(x)
        dead = torch.zeros(30, dtype=torch.bool)
        expected = (acts * d.W_dec.norm(dim=-1)).sum(-1).mean()
        out = d(x)
        torch.testing.assert_close(
            d.extra_losses(d.pre_acts(x), acts, out, x, dead, 0)["l1"], 0.7 * 0.25 * expected
        )
        torch.testing.assert_close(
            d.extra_losses(d.pre_acts(x), acts, out, x, dead, 10)["l1"], 0.7 * expected
        )


def test_jumprelu_l0_coefficient_warms_up():
    d = make_dictionary("jumprelu", d_in=4, d_sae=6, l0_coefficient=2.0, l0_warmup_steps=4)
    pre = torch.randn(10, 6)
    dead = torch.zeros(6, dtype=torch.bool)
    l0 = (pre > d.threshold).float().sum(-1).mean()
    args = (pre, pre, torch.zeros(10, 4), torch.zeros(10, 4), dead)
    torch.testing.assert_close(d.extra_losses(*args, 0)["l0"], 2.0 * 0.25 * l0)
    torch.testing.assert_close(d.extra_losses(*args, 3)["l0"], 2.0 * l0)


def test_a_new_dictionary_has_empty_provenance():
    d = make_dictionary("topk", d_in=4, d_sae=6, k=2)
    assert d.training_log == [] and d.file_metadata == {} and d.log_density is None


class TestAuxK:
    def test_auxk_is_zero_without_dead_latents_and_trains_only_dead_ones(self):
        d = randomized(make_dictionary("topk", d_in=8, d_sae=30, k=3, aux_coefficient=1.0))
        x = torch.randn(16, 8)
        none_dead = torch.zeros(30, dtype=torch.bool)
        assert "auxk" not in d.training_losses(x, x, none_dead, 0)[2]
        dead = torch.zeros(30, dtype=torch.bool)
        dead[[2, 7, 11]] = True
        _, _, losses = d.training_losses(x, x, dead, 0)
        assert losses["auxk"] > 0
        losses["auxk"].backward()
        live_columns = d.W_enc.grad[:, ~dead]
        assert torch.count_nonzero(live_columns) == 0 and torch.count_nonzero(d.W_enc.grad[:, dead]) > 0


def test_removing_the_parallel_gradient_leaves_it_orthogonal_to_each_row():
    d = randomized(make_dictionary("topk", d_in=8, d_sae=30, k=3))
    d.normalize_decoder()
    d.W_dec.grad = torch.randn(30, 8)
    d.remove_parallel_decoder_grad()
    torch.testing.assert_close((d.W_dec.grad * d.W_dec).sum(-1), torch.zeros(30), atol=1e-6, rtol=0)
