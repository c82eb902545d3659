"""Feature statistics in one streaming pass equal the same statistics computed from every activation
at once (a brute-force reference), whatever the chunking; through the model they are the encoder's."""

from __future__ import annotations

import math

import pytest
import torch

from interp.base.errors import InputError
from interp.dictionaries import make_dictionary
from interp.dictionaries.feature_stats import PAD, feature_stats, feature_stats_from_acts


def sparse_acts(n_rows=23, n_pos=9, n_features=5, seed=0):
    """Sparse non-negative activations whose scale grows along the rows (so histogram ranges double
    during the stream), a right-padded mask, and token ids."""
    g = torch.Generator().manual_seed(seed)
    acts = torch.rand(n_rows, n_pos, n_features, generator=g)
    acts = acts * (torch.rand(n_rows, n_pos, n_features, generator=g) < 0.3)
    acts = acts * torch.linspace(0.01, 40.0, n_rows)[:, None, None]
    acts[:, :, 4] = 0.0  # a latent that never fires
    lengths = torch.randint(3, n_pos + 1, (n_rows,), generator=g)
    mask = torch.arange(n_pos)[None, :] < lengths[:, None]
    tokens = torch.randint(0, 50, (n_rows, n_pos), generator=g)
    return tokens, acts, mask


def reference(tokens, acts, mask, bins, ranges, k, before, after):
    """Everything at once: per latent, density / max / mean, histogram on the given final ranges,
    and the top rows by their largest activation with their windows."""
    out = []
    for f in range(acts.shape[-1]):
        a = acts[..., f]
        kept = a[mask]
        on = kept[kept > 0]
        counts = torch.zeros(bins, dtype=torch.long)
        if ranges[f] > 0:
            index = torch.ceil(on * (bins / ranges[f])).long() - 1
            counts = torch.bincount(index, minlength=bins)
        row_max, row_pos = a.masked_fill(~mask, -math.inf).max(1)
        order = torch.sort(row_max, descending=True, stable=True).indices
        contexts = []
        for row in order.tolist():
            if len(contexts) == k or row_max[row] <= 0:
                break
            pos = int(row_pos[row])
            window = []
            for p in range(pos - before, pos + after + 1):
                inside = 0 <= p < tokens.shape[1] and bool(mask[row, p])
                window.append((int(tokens[row, p]) if inside else PAD, float(a[row, p]) if inside else 0.0))
            contexts.append((float(row_max[row]), row, window))
        out.append(
            {
                "density": float((kept > 0).float().mean()),
                "max": float(kept.max().clamp_min(0)),
                "mean": float(kept.double().mean()),
                "mean_active": float(on.double().mean()) if on.numel() else 0.0,
                "counts": counts,
                "contexts": contexts,
            }
        )
    return out


class TestStreamingEqualsAllAtOnce:
    @pytest.mark.parametrize("row_chunk", [1, 4, 100])
    @pytest.mark.parametrize("bins", [8, 7])
    def test_every_statistic(self, row_chunk, bins):
        tokens, acts, mask = sparse_acts()
        k, before, after = 4, 2, 1
        stats = feature_stats_from_acts(
            tokens, acts, mask=mask, n_contexts=k, bins=bins, context_before=before, context_after=after,
            row_chunk=row_chunk,
        )  # fmt: skip
        expected = reference(tokens, acts, mask, bins, stats.histogram_range.tolist(), k, before, after)
        assert stats.n_tokens == int(mask.sum())
        for f, ref in enumerate(expected):
            assert float(stats.density[f]) == pytest.approx(ref["density"], rel=1e-6)
            assert float(stats.max_act[f]) == pytest.approx(ref["max"], rel=1e-6)
            assert float(stats.mean_act[f]) == pytest.approx(ref["mean"], rel=1e-5, abs=1e-12)
            assert float(stats.mean_active[f]) == pytest.approx(ref["mean_active"], rel=1e-5, abs=1e-12)
            assert stats.histogram_counts[f].tolist() == ref["counts"].tolist()
            assert int(stats.histogram_counts[f].sum()) == int((acts[..., f][mask] > 0).sum())
            n = len(ref["contexts"])
            assert stats.context_rows[f, :n].tolist() == [row for _, row, _ in ref["contexts"]]
            assert stats.context_rows[f, n:].tolist() == [-1] * (k - n)
            for c, (value, _, window) in enumerate(ref["contexts"]):
                assert float(stats.context_values[f, c]) == pytest.approx(value, rel=1e-6)
                assert stats.context_tokens[f, c].tolist() == [t for t, _ in window]
                assert stats.context_acts[f, c].tolist() == pytest.approx([v for _, v in window], rel=1e-6)
                assert int(stats.context_max_index[f, c]) == before

    def test_ranges_doubled_and_hold_the_maximum(self):
        tokens, acts, mask = sparse_acts()
        stats = feature_stats_from_acts(tokens, acts, mask=mask, bins=8, row_chunk=1)
        first_max = acts[0, :, 0][mask[0]].max()
        fired = stats.histogram_range[:4]
        assert (fired >= stats.max_act[:4]).all() and (fired < 2 * stats.max_act[:4]).all()
        assert torch.equal(fired, torch.exp2(torch.log2(fired).round()))  # powers of two
        assert float(fired[0]) > 100 * float(first_max)  # grew by doubling from the first rows' maximum
        assert float(stats.histogram_range[4]) == 0.0 and stats.histogram(4) == ([], [])
        counts, edges = stats.histogram(0)
        assert len(edges) == len(counts) + 1 and edges[-1] >= float(stats.max_act[0]) and counts[-1] > 0

    def test_the_same_result_for_any_chunking(self):
        tokens, acts, mask = sparse_acts(seed=3)
        a = feature_stats_from_acts(tokens, acts, mask=mask, row_chunk=1, n_contexts=3)
        b = feature_stats_from_acts(tokens, acts, mask=mask, row_chunk=23, n_contexts=3)
        for name in ("histogram_counts", "context_rows", "context_tokens", "context_acts", "histogram_range"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name

    def test_ranking(self):
        tokens, acts, mask = sparse_acts()
        stats = feature_stats_from_acts(tokens, acts, mask=mask, features=[10, 11, 12, 13, 14])
        by_density = stats.top("density")
        assert by_density[-1] == 14 and len(by_density) == 5
        densities = [float(stats.density[stats.index_of(f)]) for f in by_density]
        assert densities == sorted(densities, reverse=True)
        assert stats.top("max_act", 2) == [10 + int(i) for i in stats.max_act.argsort(descending=True)[:2]]
        with pytest.raises(InputError, match="by='l0' is not allowed"):
            stats.top("l0")
        with pytest.raises(InputError, match="latent 3 was not measured"):
            stats.index_of(3)


def test_through_the_model_the_latents_are_the_encoders(toy_model, toy_batches):
    """Independent path: encode the cached hook by hand, then the all-at-once statistics."""
    from interp.model.cache import cache_activations

    sae = make_dictionary("topk", d_in=160, d_sae=64, k=4, hook_name="blocks.1.hook_resid_pre", seed=1)
    batches = toy_batches[:2]
    stats = feature_stats(toy_model, sae, batches, features=[3, 7, 9], n_contexts=3, model_batch=5)
    tokens = torch.cat([t for t, _ in batches])
    mask = torch.cat([m for _, m in batches])
    with torch.no_grad():
        cache = cache_activations(toy_model, tokens, ["blocks.1.hook_resid_pre"])
        acts = sae.encode(cache["blocks.1.hook_resid_pre"])[..., [3, 7, 9]]
    expected = feature_stats_from_acts(tokens, acts, mask=mask, features=[3, 7, 9], n_contexts=3)
    assert stats.n_tokens == expected.n_tokens == int(mask.sum())
    assert torch.equal(stats.context_rows, expected.context_rows)
    assert torch.equal(stats.context_tokens, expected.context_tokens)
    torch.testing.assert_close(stats.density, expected.density)
    torch.testing.assert_close(stats.context_acts, expected.context_acts, rtol=1e-4, atol=1e-5)


class TestRefused:
    def test_bad_options_name_themselves(self, toy_model):
        sae = make_dictionary("topk", d_in=160, d_sae=16, k=2, hook_name="blocks.0.hook_resid_pre")
        tokens = torch.zeros(1, 4, dtype=torch.long)
        with pytest.raises(InputError, match=r"features \[16\] are not latents"):
            feature_stats(toy_model, sae, tokens, features=[16])
        with pytest.raises(InputError, match="name a latent twice"):
            feature_stats(toy_model, sae, tokens, features=[1, 1])
        with pytest.raises(InputError, match="n_contexts=0 is not allowed"):
            feature_stats(toy_model, sae, tokens, n_contexts=0)
        bare = make_dictionary("topk", d_in=160, d_sae=16, k=2)
        with pytest.raises(InputError, match="has no hook_name"):
            feature_stats(toy_model, bare, tokens)

    def test_an_empty_corpus(self, toy_model):
        sae = make_dictionary("topk", d_in=160, d_sae=16, k=2, hook_name="blocks.0.hook_resid_pre")
        tokens = torch.zeros(2, 4, dtype=torch.long)
        with pytest.raises(InputError, match="No tokens to measure"):
            feature_stats(toy_model, sae, [(tokens, torch.zeros(2, 4, dtype=torch.bool))])
