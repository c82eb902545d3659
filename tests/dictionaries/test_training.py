"""Training machinery: the shuffling buffer, b_dec's initialisation, the schedule, dead latents, errors."""

from __future__ import annotations

import pytest
import torch

from dictionaries.synthetic import sparse_codes, unit_directions
from interp.base.errors import InputError
from interp.dictionaries import make_dictionary
from interp.dictionaries.training import (
    DictionaryTrainer,
    ShuffleBuffer,
    TrainingConfig,
    geometric_median,
    scale_dictionary,
    train_dictionary,
)


class TestShuffleBuffer:
    def test_every_row_is_served_once_and_the_order_is_seeded(self):
        def served(seed):
            buffer = ShuffleBuffer(capacity=40, batch_size=8, seed=seed)
            out = []
            for start in range(0, 100, 10):
                buffer.add(torch.arange(start, start + 10)[:, None])
                out += list(buffer.release())
            return torch.cat(out + list(buffer.flush()))[:, 0]

        first = served(0)
        assert sorted(first.tolist()) == list(range(96))[: len(first)] or len(set(first.tolist())) == len(
            first
        )
        assert (
            len(first) == 96 and len(set(first.tolist())) == 96
        )  # 100 rows, a final partial batch of 4 dropped
        assert torch.equal(first, served(0)) and not torch.equal(first, served(1))
        assert not torch.equal(first, torch.sort(first).values)  # shuffled


def test_geometric_median_minimises_the_summed_distance_and_ignores_outliers():
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(200, 5, generator=generator) + torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0])
    points[:10] += 1000.0  # far outliers pull the mean, not the median
    median = geometric_median(points)

    def cost(p):
        return (points - p).norm(dim=-1).sum()

    for _ in range(20):
        assert cost(median) <= cost(median + 0.01 * torch.randn(5, generator=generator))
    assert (median - torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0])).norm() < 0.5 < (points.mean(0) - median).norm()


class TestBDecInit:
    @pytest.mark.parametrize("how", ["geometric_median", "mean", "zeros"])
    def test_b_dec_starts_from_the_first_buffer(self, how):
        x = torch.randn(512, 6) + 4.0
        d = make_dictionary("topk", d_in=6, d_sae=12, k=2)
        trainer = DictionaryTrainer(
            d, TrainingConfig(batch_tokens=64, buffer_tokens=512, b_dec_init=how), 512
        )
        trainer.buffer.add(x)
        trainer._init_b_dec()
        expected = {"geometric_median": geometric_median(x), "mean": x.mean(0), "zeros": torch.zeros(6)}[how]
        torch.testing.assert_close(d.b_dec.detach(), expected)

    def test_auto_is_the_geometric_median_for_an_sae_and_the_target_mean_for_a_transcoder(self):
        x, y = torch.randn(256, 6) + 2.0, torch.randn(256, 3) - 5.0
        sae = make_dictionary("topk", d_in=6, d_sae=12, k=2)
        train_dictionary(sae, x, batch_tokens=64, buffer_tokens=128, lr=1e-12, lr_decay_fraction=0.0)
        torch.testing.assert_close(sae.b_dec.detach(), geometric_median(x), atol=1e-6, rtol=1e-5)
        tc = make_dictionary("topk", d_in=6, d_sae=12, k=2, kind="transcoder", d_out=3)
        train_dictionary(
            tc, x, targets=y, batch_tokens=64, buffer_tokens=128, lr=1e-12, lr_decay_fraction=0.0
        )
        torch.testing.assert_close(
            tc.b_dec.detach(), y.mean(0), atol=1e-6, rtol=1e-5
        )  # the first full buffer held all 256


def test_a_transcoders_pre_activations_start_centred_on_the_data():
    x = torch.randn(512, 6) + 3.0
    tc = make_dictionary("topk", d_in=6, d_sae=12, k=2, kind="transcoder", d_out=3)
    trainer = DictionaryTrainer(tc, TrainingConfig(batch_tokens=64, buffer_tokens=512), 512)
    trainer.buffer.add(torch.cat([x, torch.randn(512, 3)], dim=-1))
    trainer._init_b_dec()
    with torch.no_grad():
        torch.testing.assert_close(tc.pre_acts(x).mean(0), torch.zeros(12), atol=1e-5, rtol=0)
    sae = make_dictionary("topk", d_in=6, d_sae=12, k=2)
    trainer = DictionaryTrainer(sae, TrainingConfig(batch_tokens=64, buffer_tokens=512), 512)
    trainer.buffer.add(x)
    trainer._init_b_dec()
    assert torch.count_nonzero(sae.b_enc) == 0  # an SAE is centred by b_dec instead


def test_learning_rate_warms_up_then_decays_to_zero():
    d = make_dictionary("topk", d_in=4, d_sae=8, k=2)
    train_dictionary(
        d, torch.randn(1000, 4), batch_tokens=10, buffer_tokens=20, lr=1.0, lr_warmup_steps=10,
        lr_decay_fraction=0.5, log_every=1,
    )  # fmt: skip
    lrs = [record["lr"] for record in d.training_log]
    # the log records the rate of the next step: warm-up over steps 0..9, decay over the last 50
    assert len(lrs) == 100
    torch.testing.assert_close(torch.tensor(lrs[:9]), torch.arange(2, 11) / 10)
    assert lrs[10:50] == [1.0] * 40
    torch.testing.assert_close(torch.tensor(lrs[50:]), (50 - torch.arange(1, 51).float()).clamp_min(0) / 50)


def test_a_latent_that_never_fires_is_counted_dead():
    d = make_dictionary("topk", d_in=4, d_sae=8, k=2, aux_coefficient=0.0)
    with torch.no_grad():
        d.W_enc[:, 0] = 0.0
        d.b_enc[0] = -1e6
    train_dictionary(
        d, torch.randn(2000, 4), batch_tokens=100, buffer_tokens=400, dead_after_tokens=500, log_every=1
    )
    assert d.training_log[3]["dead_fraction"] == 0.0  # 400 tokens seen: none dead yet
    assert d.training_log[-1]["dead_fraction"] >= 1 / 8


def test_training_reduces_the_error_and_logs():
    x = sparse_codes(4000, n_features=16, active=2.0) @ unit_directions(16, 8)
    d = make_dictionary("topk", d_in=8, d_sae=32, k=4)
    with torch.no_grad():
        before = float((d(x) - x).pow(2).sum(-1).mean())
    train_dictionary(d, x, batch_tokens=100, buffer_tokens=1000, log_every=10, lr=3e-3)
    with torch.no_grad():
        after = float((d(x) - x).pow(2).sum(-1).mean())
    assert after < 0.5 * before
    assert d.training_log[-1]["step"] == 40 and {"mse", "l0", "explained_variance", "dead_fraction"} <= set(
        d.training_log[-1]
    )
    assert not d.training


def test_an_iterator_of_batches_and_n_tokens_cycling_a_tensor():
    x = torch.randn(600, 8)
    d = make_dictionary("topk", d_in=8, d_sae=16, k=2)
    train_dictionary(
        d,
        (x[i : i + 100] for i in range(0, 600, 100)),
        batch_tokens=50,
        buffer_tokens=200,
        lr_decay_fraction=0.0,
    )
    assert d.training_log[-1]["tokens"] == 600
    d2 = make_dictionary("topk", d_in=8, d_sae=16, k=2)
    train_dictionary(d2, x, n_tokens=1500, batch_tokens=50, buffer_tokens=200)
    assert d2.training_log[-1]["tokens"] == 1500


class TestErrors:
    def test_refusals_name_the_problem(self):
        d = make_dictionary("topk", d_in=8, d_sae=16, k=2)
        with pytest.raises(InputError, match="lr_decay_fraction > 0 needs the run's length"):
            train_dictionary(d, iter([torch.randn(10, 8)]))
        with pytest.raises(InputError, match="fewer than one batch"):
            train_dictionary(d, torch.randn(10, 8), batch_tokens=64, buffer_tokens=128)
        with pytest.raises(InputError, match="width 5.*d_in=8"):
            train_dictionary(d, torch.randn(100, 5), batch_tokens=10, buffer_tokens=20)
        with pytest.raises(InputError, match="Unknown training option.*learning_rate"):
            train_dictionary(d, torch.randn(100, 8), learning_rate=1.0)
        with pytest.raises(InputError, match="buffer_tokens=100 is smaller than 2 x batch_tokens=64"):
            TrainingConfig(batch_tokens=64, buffer_tokens=100)
        tc = make_dictionary("topk", d_in=8, d_sae=16, k=2, kind="transcoder", d_out=4)
        with pytest.raises(InputError, match="needs targets"):
            train_dictionary(tc, torch.randn(100, 8))
        with pytest.raises(InputError, match=r"targets have shape \(100, 3\); expected \(100, 4\)"):
            train_dictionary(
                tc, torch.randn(100, 8), targets=torch.randn(100, 3), batch_tokens=10, buffer_tokens=20
            )
        with pytest.raises(InputError, match="targets are for transcoders"):
            train_dictionary(
                d, torch.randn(100, 8), targets=torch.randn(100, 8), batch_tokens=10, buffer_tokens=20
            )


def test_progress_prints_one_line_per_log_record(capsys):
    d = make_dictionary("topk", d_in=8, d_sae=16, k=2, hook_name="blocks.0.hook_resid_pre")
    train_dictionary(d, torch.randn(1000, 8), batch_tokens=50, buffer_tokens=200, log_every=5, progress=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(d.training_log) == 4
    last = d.training_log[-1]
    assert lines[-1].startswith("blocks.0.hook_resid_pre: step 20 tokens 1000 mse ")
    assert (
        f"l0 {last['l0']:.1f}" in lines[-1]
        and f"explained variance {last['explained_variance']:.3f}" in lines[-1]
    )
    d2 = make_dictionary("topk", d_in=8, d_sae=16, k=2)
    train_dictionary(d2, torch.randn(1000, 8), batch_tokens=50, buffer_tokens=200, log_every=5)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("arch", "kind"),
    [("relu", "sae"), ("topk", "sae"), ("jumprelu", "skip_transcoder"), ("batchtopk", "transcoder")],
)
def test_scaling_a_dictionary_rescales_its_function(arch, kind):
    fields = {"k": 3} if "topk" in arch else {}
    d = make_dictionary(arch, d_in=8, d_sae=20, kind=kind, d_out=None if kind == "sae" else 5, **fields)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in [*d.parameters(), *d.buffers()]:
            parameter.copy_(
                torch.rand(parameter.shape, generator=generator) * 0.2
                if parameter.shape == (20,)
                else torch.randn(parameter.shape, generator=generator)
            )
    x = torch.randn(30, 8)
    c_in, c_out = (3.0, 3.0) if kind == "sae" else (3.0, 0.5)
    with torch.no_grad():
        before_acts, before_out = d.encode(c_in * x), d(c_in * x)
        norms = d.W_dec.norm(dim=-1).clone()
        scale_dictionary(d, c_in, c_out)
        torch.testing.assert_close(d.encode(x), before_acts / c_out)
        torch.testing.assert_close(d(x), before_out / c_out)
        torch.testing.assert_close(d.W_dec.norm(dim=-1), norms)
    if kind == "sae":
        with pytest.raises(InputError, match="c_in must equal c_out"):
            scale_dictionary(d, 2.0, 1.0)


@pytest.mark.parametrize("kind", ["sae", "transcoder"])
def test_normalized_training_is_invariant_to_the_activations_scale(kind):
    """With a power-of-two factor the scaled data are bit-identical, so the two runs train the same
    dictionary in scaled units and differ, once folded, by exactly that factor."""
    x = sparse_codes(3000, n_features=16, active=2.0) @ unit_directions(16, 8) + 0.5
    y = x @ torch.randn(8, 4, generator=torch.Generator().manual_seed(3)) if kind == "transcoder" else None
    runs = []
    for factor in (1.0, 1024.0):
        d = make_dictionary("topk", d_in=8, d_sae=32, k=4, kind=kind, d_out=None if kind == "sae" else 4)
        targets = None if y is None else y * factor
        train_dictionary(
            d, x * factor, targets=targets, normalize_activations=True, batch_tokens=100, buffer_tokens=1000
        )
        runs.append(d)
    small, large = runs
    assert small.training_log[-1]["input_scale"] == pytest.approx(
        1024 * large.training_log[-1]["input_scale"]
    )
    with torch.no_grad():
        torch.testing.assert_close(large.encode(1024 * x), 1024 * small.encode(x))
        torch.testing.assert_close(large(1024 * x), 1024 * small(x))
    assert small.trained and large.trained


def test_normalized_training_continues_from_the_trained_function():
    """A trained dictionary is first expressed in the scaled units (the same function), so a run with
    a learning rate too small to move it leaves it as it was."""
    x = sparse_codes(2000, n_features=16, active=2.0) @ unit_directions(16, 8) * 50.0
    d = make_dictionary("topk", d_in=8, d_sae=32, k=4)
    train_dictionary(d, x, batch_tokens=100, buffer_tokens=1000)
    with torch.no_grad():
        before = d(x).clone()
    train_dictionary(d, x, normalize_activations=True, lr=1e-12, batch_tokens=100, buffer_tokens=1000)
    with torch.no_grad():
        torch.testing.assert_close(d(x), before, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    "arch, kind, fields",
    [
        ("topk", "sae", {"k": 4}),
        ("batchtopk", "sae", {"k": 4}),
        ("jumprelu", "transcoder", {"d_out": 4}),
        ("relu", "skip_transcoder", {"d_out": 4, "l1_coefficient": 0.1}),
    ],
)
def test_a_trainer_restored_from_its_state_goes_on_to_the_uninterrupted_result(arch, kind, fields):
    """Checkpointing: stop after some pushes, save `state_dict` (through torch.save, as a checkpoint
    file holds it), restore it into a fresh trainer of a fresh dictionary, push the rest: the weights,
    Adam's moments and the log equal the uninterrupted run's bit for bit (the same float operations
    in the same order)."""
    import io

    x = sparse_codes(4000, n_features=16, active=2.0) @ unit_directions(16, 8) + 0.3
    y = x @ torch.randn(8, 4, generator=torch.Generator().manual_seed(5)) if kind != "sae" else None
    chunks = list(zip(x.split(250), y.split(250) if y is not None else [None] * 16, strict=True))
    config = TrainingConfig(
        batch_tokens=100, buffer_tokens=600, n_tokens=4000, log_every=3, dead_after_tokens=300,
        normalize_activations=True, lr_warmup_steps=5,
    )  # fmt: skip

    def fresh():
        d = make_dictionary(arch, d_in=8, d_sae=32, kind=kind, **fields)
        return DictionaryTrainer(d, config, 4000)

    straight = fresh()
    for chunk in chunks:
        straight.push(*chunk)
    straight.finish()
    for cut in (1, 3, 9):
        first = fresh()
        for chunk in chunks[:cut]:
            first.push(*chunk)
        saved = io.BytesIO()
        torch.save(first.state_dict(), saved)
        first.push(*chunks[cut])  # the interrupted trainer moving on does not touch the saved state
        resumed = fresh()
        resumed.load_state_dict(torch.load(io.BytesIO(saved.getvalue()), weights_only=True))
        for chunk in chunks[cut:]:
            resumed.push(*chunk)
        resumed.finish()
        assert resumed.step == straight.step and resumed.log == straight.log
        for name, value in straight.dictionary.state_dict().items():
            assert torch.equal(resumed.dictionary.state_dict()[name], value), (cut, name)
        moments = [s["exp_avg_sq"] for s in straight.optimizer.state_dict()["state"].values()]
        restored = [s["exp_avg_sq"] for s in resumed.optimizer.state_dict()["state"].values()]
        assert all(torch.equal(a, b) for a, b in zip(moments, restored, strict=True))
    assert straight.log[-1]["dead_fraction"] < 1 and len(straight.log) > 5
