"""Feature attribution: exact on a model built so the metric is linear in the latents, a first-order match
of exact (interpolated) latent patching on the toy, and latents + error + skip summing to the whole
site's attribution patching."""

from __future__ import annotations

import pytest
import torch
from helpers import ioi_pairs, make_phi_model

from interp.base.errors import InputError
from interp.dictionaries import make_dictionary
from interp.dictionaries.splice import splice
from interp.methods.attribution_patching import attribution_patch
from interp.methods.features.attribution import feature_attribution
from interp.methods.features.interventions import LatentPatch
from interp.methods.features.patching import patch_latents
from interp.model.loading import load_model
from interp.toy.train import make_tokenizer


def dictionary(kind: str, d_in: int, hook_name: str, hook_name_out: str | None = None, seed: int = 0):
    options = {} if kind == "sae" else {"kind": kind, "hook_name_out": hook_name_out}
    d = make_dictionary("topk", d_in=d_in, d_sae=48, k=6, hook_name=hook_name, seed=seed, **options)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        d.b_enc.copy_(0.3 + 0.1 * torch.randn(d.d_sae, generator=generator))
        if d.W_skip is not None:
            d.W_skip.copy_(0.05 * torch.randn(d.d_out, d.d_in, generator=generator))
    return d


@pytest.fixture(scope="module")
def linear_phi(tmp_path_factory):
    """A tiny Phi whose LayerNorms are linear to float precision (eps 1e12, weights x 1e6: LN(x) =
    (x - mean) * w + b): after the last block's MLP output, the metric is linear in the residual."""
    model = make_phi_model(seed=2, layer_norm_eps=1e12)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layernorm" in name and name.endswith("weight"):
                param.mul_(1e6)
    directory = tmp_path_factory.mktemp("linear_phi")
    model.save_pretrained(directory)
    make_tokenizer().save_pretrained(directory)
    return load_model(str(directory))


def exact_changes(model, pairs, d, cells, error=True):
    """Per prompt, the exact metric change of patching each (latent, pos) cell alone."""
    base = patch_latents(model, pairs, [LatentPatch(d, [0], [])], error=error)
    return [
        patch_latents(model, pairs, [LatentPatch(d, [lat], [pos])], error=error) - base for lat, pos in cells
    ]


def top_cells(values, offset: int, d_sae: int, n: int):
    """The n (latent, pos) cells of one dictionary with the largest mean |attribution|."""
    block = values[offset : offset + d_sae].abs().mean(-1)
    flat = block.flatten().topk(n).indices
    return [(int(i) // block.shape[1], int(i) % block.shape[1]) for i in flat]


class TestExactWhereLinear:
    @pytest.mark.parametrize("kind", ["sae", "transcoder"])
    def test_equals_exact_latent_patching(self, linear_phi, kind):
        pairs = ioi_pairs(linear_phi.tokenizer, 3)
        d_model = linear_phi.cfg.d_model
        if kind == "sae":
            d = dictionary("sae", d_model, "blocks.1.hook_resid_post")
        else:
            d = dictionary("transcoder", d_model, "blocks.1.ln1.hook_out", "blocks.1.hook_mlp_out")
        result = feature_attribution(linear_phi, d, pairs, reduce="none")
        assert result.dims == ("feature", "pos") and result.values.shape == (
            d.d_sae + 1,
            pairs.clean_tokens.shape[1],
            3,
        )
        cells = top_cells(result.values, 0, d.d_sae, 4)
        for (lat, pos), exact in zip(cells, exact_changes(linear_phi, pairs, d, cells), strict=True):
            estimate = result.values[lat, pos]
            assert float(exact.abs().max()) > 1e-3
            # 0.1% of the change, plus float32 roundoff of the two metrics whose difference it is
            torch.testing.assert_close(estimate, exact, rtol=0, atol=1e-3 * float(exact.abs().max()) + 1e-5)
        every = patch_latents(linear_phi, pairs, [LatentPatch(d)]) - patch_latents(
            linear_phi, pairs, [LatentPatch(d, [0], [])]
        )
        total = result.values[: d.d_sae].sum((0, 1))
        torch.testing.assert_close(total, every, rtol=0, atol=1e-3 * float(every.abs().max()))


class TestOnTheToy:
    def test_first_order_match_of_interpolated_patching(self, toy_model):
        pairs = ioi_pairs(toy_model.tokenizer, 4)
        sae = dictionary("sae", 160, "blocks.2.hook_resid_pre")
        result = feature_attribution(toy_model, sae, pairs, reduce="none")
        alpha = 1e-2
        with torch.no_grad(), splice(toy_model, sae) as spliced:
            name = spliced.name(sae)
            source = toy_model.run_with_cache(pairs.clean_tokens, names_filter=name)[1][name]
            base_logits = toy_model(pairs.corrupted_tokens)[:, -1]
            rows = torch.arange(len(pairs))

            def metric(logits):
                return logits[rows, pairs.answer] - logits[rows, pairs.wrong]

            for lat, pos in top_cells(result.values, 0, sae.d_sae, 3):

                def nudge(acts, hook, lat=lat, pos=pos):
                    acts = acts.clone()
                    acts[:, pos, lat] += alpha * (source[:, pos, lat] - acts[:, pos, lat])
                    return acts

                logits = toy_model.run_with_hooks(pairs.corrupted_tokens, fwd_hooks=[(name, nudge)])[:, -1]
                slope = (metric(logits) - metric(base_logits)) / alpha
                estimate = result.values[lat, pos]
                assert float(estimate.abs().max()) > 1e-3
                torch.testing.assert_close(
                    estimate, slope, rtol=0.05, atol=0.02 * float(estimate.abs().max())
                )

    @pytest.mark.parametrize("direction", ["denoising", "noising"])
    def test_nodes_sum_to_the_whole_site(self, toy_model, direction):
        pairs = ioi_pairs(toy_model.tokenizer, 3)
        sae = dictionary("sae", 160, "blocks.2.hook_resid_pre")
        skip = dictionary(
            "skip_transcoder", 160, "blocks.1.ln1.hook_normalized", "blocks.1.hook_mlp_out", seed=4
        )
        result = feature_attribution(toy_model, [sae, skip], pairs, direction=direction, reduce="none")
        labels = result.labels["feature"]
        assert (
            labels[0] == "blocks.2.hook_resid_pre[0]"
            and labels[sae.d_sae] == "blocks.2.hook_resid_pre[error]"
        )
        assert labels[-2:] == ["blocks.1.hook_mlp_out[error]", "blocks.1.hook_mlp_out[skip]"]
        whole = attribution_patch(toy_model, pairs, direction=direction, reduce="none")
        split = sae.d_sae + 1
        for values, expected in (
            (result.values[:split].sum(0), whole["resid_pre"].values[2]),
            (result.values[split:].sum(0), whole["mlp_out"].values[1]),
        ):
            assert float(expected.abs().max()) > 1e-3
            torch.testing.assert_close(values, expected, rtol=1e-3, atol=1e-4 * float(expected.abs().max()))
        assert float(result.values[split - 1].abs().max()) > 0 and float(result.values[-1].abs().max()) > 0
        assert result.measures == "change" and result.direction == direction

    def test_without_the_error_term_and_refusals(self, toy_model):
        pairs = ioi_pairs(toy_model.tokenizer, 2)
        sae = dictionary("sae", 160, "blocks.2.hook_resid_pre")
        result = feature_attribution(toy_model, sae, pairs, error=False)
        assert result.values.shape[0] == sae.d_sae and result.extra["error"] is False
        assert len(result.labels["feature"]) == sae.d_sae
        with pytest.raises(InputError, match="non-empty list"):
            feature_attribution(toy_model, [], pairs)
        with splice(toy_model, sae):
            with pytest.raises(InputError, match="error=False"):
                feature_attribution(toy_model, sae, pairs, error=False)


class TestKind:
    def test_the_kind_computes_feature_attribution_and_checks_the_splice(self, toy_model):
        from dictionary_files import saved

        from interp.dictionaries import load_dictionary
        from interp.runner.config import ConfigError, parse_config
        from interp.runner.kinds import spec_for
        from interp.runner.registry import UnitContext
        from interp.runner.worker import check_before_compute

        pairs = ioi_pairs(toy_model.tokenizer, 2)
        paths = [str(saved()["sae_b"]), str(saved()["transcoder"])]
        table = {"kind": "feature_attribution", "dictionaries": paths, "direction": "noising", "error": False}
        config = parse_config({"analysis": [table]})
        ctx = UnitContext(metric="logit_diff", seed=0, memory_budget=2**30)
        computed = spec_for("feature_attribution").compute(config.analysis[0], toy_model, pairs, ctx)
        expected = feature_attribution(
            toy_model,
            [load_dictionary(p) for p in paths],
            pairs,
            direction="noising",
            error=False,
            reduce="none",
        )
        torch.testing.assert_close(computed.values, expected.values)
        assert computed.labels["feature"] == expected.labels["feature"]
        twice = parse_config(
            {"analysis": [{"kind": "feature_attribution", "dictionaries": [paths[0], paths[0]]}]}
        )
        with pytest.raises(ConfigError, match="two dictionaries write blocks.1.hook_resid_pre"):
            check_before_compute(twice, toy_model, pairs)
