"""`interp train`: the config, the run directory, checkpoints and --resume, outputs in SAELens's layout."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch

import interp.toy.corpus  # noqa: F401  (registers corpus = "toy")
from interp.base.errors import HookNameError, InputError, RunDirectoryError
from interp.cli import main
from interp.dictionaries import load_dictionary
from interp.runner import training_run
from interp.runner.config import ConfigError
from interp.runner.text_source import documents, token_rows
from interp.runner.training_config import load_train_config, parse_train_config, train_toml
from interp.runner.training_groups import make_dictionaries, training_configs
from interp.runner.training_run import run_training

SAE = {
    "name": "resid1",
    "hook": "blocks.1.hook_resid_pre",
    "d_sae": 64,
    "k": 4,
    "batch_tokens": 200,
    "buffer_tokens": 800,
}
TRANSCODER = {
    "name": "mlp1",
    "kind": "transcoder",
    "hook": "blocks.1.ln1.hook_normalized",
    "hook_out": "blocks.1.hook_mlp_out",
    "architecture": "jumprelu",
    "expansion": 0.5,
    "batch_tokens": 200,
    "buffer_tokens": 800,
    "dead_after_tokens": 400,
}
BASE = {
    "checkpoint_every": 1000,
    "log_every": 2,
    "model": {"source": "toy", "device": "cpu", "dtype": "float32"},
    "data": {
        "corpus": "toy",
        "context_length": 32,
        "pack": False,
        "n_tokens": 3000,
        "eval_tokens": 300,
        "model_batch": 16,
    },
    "dictionary": [SAE, TRANSCODER],
}


def config_dict(**changes) -> dict:
    """BASE with changes: `data={...}` merges into [data], `sae={...}` / `transcoder={...}` into a
    dictionary table (None deletes a field), anything else replaces a top-level field."""
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if key in ("data", "model"):
            data[key].update(value)
        elif key in ("sae", "transcoder"):
            table = data["dictionary"][0 if key == "sae" else 1]
            table.update(value)
            for name in [n for n, v in table.items() if v is None]:
                del table[name]
        else:
            data[key] = value
    return data


def config(**changes):
    return parse_train_config(config_dict(**changes))


def read(path):
    return path.read_bytes()


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    summary = run_training(config(), out, progress=False)
    return out, summary


class TestOutputs:
    def test_each_dictionary_is_written_in_saelens_layout_with_its_metrics(self, straight, toy_model):
        out, summary = straight
        assert sorted(p.name for p in out.iterdir()) == sorted(
            [
                ".lock",
                "checkpoint.pt",
                "config.resolved.toml",
                "mlp1",
                "resid1",
                "run.json",
                "run.log",
                "training.json",
            ]
        )
        for name, hooks in (
            ("resid1", ("blocks.1.hook_resid_pre",) * 2),
            ("mlp1", (TRANSCODER["hook"], TRANSCODER["hook_out"])),
        ):
            folder = out / name
            assert sorted(p.name for p in folder.iterdir()) == [
                "cfg.json", "metrics.json", "sae_weights.safetensors", "sparsity.safetensors"
            ]  # fmt: skip
            cfg = json.loads((folder / "cfg.json").read_text())
            assert (cfg["metadata"]["hook_name"], cfg["metadata"].get("hook_name_out", hooks[0])) == hooks
            dictionary = load_dictionary(folder)
            assert (dictionary.hook_name, dictionary.hook_name_out) == hooks
            metrics = json.loads((folder / "metrics.json").read_text())
            entry = summary["dictionaries"][name]
            assert (
                metrics
                == entry["metrics"]
                == json.loads((out / "training.json").read_text())["dictionaries"][name]["metrics"]
            )
            assert metrics["n_tokens"] >= 300 and 0 < metrics["explained_variance"] < 1
            assert entry["tokens_trained"] == 3000 // 200 * 200 and entry["steps"] == 15
            assert [r["step"] for r in entry["training_log"]] == [2, 4, 6, 8, 10, 12, 14, 15]
        assert (
            load_dictionary(out / "resid1").d_sae == 64 and load_dictionary(out / "mlp1").d_sae == 80
        )  # 0.5 x 160

    def test_metrics_are_those_of_the_saved_dictionary_on_the_held_out_rows(self, straight, toy_model):
        """The held-out rows are the first eval_tokens tokens of the stream; metrics.json is
        evaluate_on_model of the saved file on them."""
        from interp.dictionaries import evaluate_on_model

        out, _ = straight
        held_out = list(token_rows(toy_model, config().data).batches(16, max_tokens=300))
        metrics = evaluate_on_model(toy_model, load_dictionary(out / "resid1"), held_out, model_batch=16)
        saved = json.loads((out / "resid1" / "metrics.json").read_text())
        assert saved["n_tokens"] == metrics.n_tokens
        for name in ("explained_variance", "ce_loss_recovered", "l0", "kl", "dead_fraction"):
            assert saved[name] == pytest.approx(getattr(metrics, name), rel=1e-5, abs=1e-7), name


def test_interrupted_at_a_checkpoint_then_resumed_equals_straight_through(straight, tmp_path, monkeypatch):
    """Bit-identical: the checkpoint holds every trainer's whole state and the data stream's position,
    and the resumed run repeats every float operation in the same order (same thread count)."""
    out_straight, summary = straight
    out = tmp_path / "interrupted"
    save = training_run._save_checkpoint
    saved = []

    def save_then_stop(*args):
        save(*args)
        saved.append(args[-1].tokens_read)
        if len(saved) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training_run, "_save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_training(config(), out, progress=False)
    monkeypatch.setattr(training_run, "_save_checkpoint", save)
    assert not (out / "resid1").exists() and "stopped: interrupted" in (out / "run.log").read_text()
    with pytest.raises(RunDirectoryError, match="--resume"):
        run_training(config(), out, progress=False)
    resumed = run_training(config(), out, resume=True, progress=False)
    assert f"resuming after {saved[1]} tokens" in (out / "run.log").read_text() and 2000 <= saved[1] < 3000
    assert resumed == summary
    for name in ("resid1", "mlp1"):
        for file in ("sae_weights.safetensors", "sparsity.safetensors", "cfg.json", "metrics.json"):
            assert read(out / name / file) == read(out_straight / name / file), (name, file)


def test_a_damaged_checkpoint_is_not_used_and_training_starts_again(straight, tmp_path):
    import shutil

    out_straight, summary = straight
    out = tmp_path / "run"
    shutil.copytree(out_straight, out)
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert run_training(config(), out, resume=True, progress=False) == summary
    assert "is not used, it cannot be read" in (out / "run.log").read_text()


class TestRunDirectory:
    def test_another_config_is_refused_naming_the_field_and_a_link_is_never_followed(
        self, straight, tmp_path
    ):
        out, _ = straight
        with pytest.raises(RunDirectoryError, match="different: data"):
            run_training(config(data={"seed": 1}), out, resume=True, progress=False)
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        (tmp_path / "elsewhere").mkdir()
        os.symlink(tmp_path / "elsewhere", fresh / "resid1")
        with pytest.raises(RunDirectoryError, match="symbolic links where run files go"):
            run_training(config(), fresh, progress=False)
        (fresh / "resid1").unlink()
        (fresh / "notes.txt").write_text("mine")
        with pytest.raises(RunDirectoryError, match="not part of an interp run"):
            run_training(config(), fresh, progress=False)
        assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == []

    def test_the_manifest_and_resolved_config_own_the_directory(self, straight):
        out, _ = straight
        manifest = json.loads((out / "run.json").read_text())
        resolved = (out / "config.resolved.toml").read_text()
        assert resolved.splitlines()[0] == f"# config hash: {manifest['config_hash']}"
        assert resolved.split("\n", 1)[1] == train_toml(config())
        assert parse_train_config(__import__("tomllib").loads(resolved)) == config()  # it reads back


class TestConfigErrors:
    @pytest.mark.parametrize(
        "changes, message",
        [
            ({"data": {"dataset": "x"}}, "exactly one data source: corpus, dataset or files"),
            ({"data": {"corpus": None}}, "exactly one data source"),
            ({"data": {"text_field": "body"}}, "text_field applies to dataset / files, not to a corpus"),
            ({"data": {"context_lenght": 64}}, "data.context_lenght: Extra inputs are not permitted"),
            ({"data": {"n_tokens": 0}}, "data.n_tokens: Input should be greater than or equal to 1"),
            (
                {"sae": {"kk": 4}},
                "unknown field\\(s\\) kk; architecture 'topk' has aux_coefficient, aux_k, k",
            ),
            ({"transcoder": {"k": 4}}, "architecture 'jumprelu' has bandwidth"),
            ({"sae": {"architecture": "gated"}}, "architecture 'gated' is unknown"),
            ({"sae": {"expansion": 4}}, "exactly one of d_sae and expansion"),
            ({"sae": {"hook_out": "blocks.1.hook_mlp_out"}}, "hook_out is for transcoders"),
            ({"transcoder": {"hook_out": None}}, "a transcoder needs hook_out"),
            ({"sae": {"name": "../up"}}, "is not a valid dictionary name"),
            ({"sae": {"name": "training.json"}}, "not a valid dictionary name"),
            ({"sae": {"name": "MLP1"}}, "dictionary names must be unique"),
            ({"sae": {"lr": 0}}, "dictionary.0.lr: Input should be greater than 0"),
            ({"checkpoint_every": -1}, "checkpoint_every"),
            ({"model": {"device": "meta"}}, "model.device"),
        ],
    )
    def test_bad_fields_are_named(self, changes, message):
        with pytest.raises(ConfigError, match=message):
            config(**changes)

    def test_errors_found_once_the_model_is_loaded_name_the_dictionary_and_write_nothing(self, tmp_path):
        for changes, error, message in [
            ({"sae": {"hook": "blocks.1.hook_resid_mid"}}, HookNameError, "blocks.1.hook_resid_mid"),
            ({"sae": {"k": 65}}, InputError, "dictionary 'resid1': k=65 is not allowed"),
            ({"transcoder": {"expansion": 0.33}}, InputError, "not a whole number of latents"),
            ({"sae": {"batch_tokens": 500}}, InputError, "dictionary 'resid1': buffer_tokens=800 is smaller"),
            ({"data": {"context_length": 500}}, InputError, "longer than the model's context"),
        ]:
            out = tmp_path / str(len(list(tmp_path.iterdir())))
            with pytest.raises(error, match=message):
                run_training(config(**changes), out, progress=False)
            assert not (out / "run.json").exists()  # nothing that blocks the corrected command


class TestEveryOptionChangesWhatRuns:
    @pytest.mark.parametrize(
        "field, value",
        [
            ("lr", 3e-3), ("batch_tokens", 100), ("buffer_tokens", 1000), ("lr_warmup_steps", 7),
            ("lr_decay_fraction", 0.5), ("b_dec_init", "zeros"), ("normalize_activations", True),
            ("dead_after_tokens", 123), ("adam_betas", (0.8, 0.99)), ("seed", 5),
        ],
    )  # fmt: skip
    def test_training_fields_reach_the_trainer(self, field, value):
        before, after = training_configs(config())[0], training_configs(config(sae={field: value}))[0]
        assert getattr(after, field) == value != getattr(before, field)

    def test_run_fields_reach_the_trainer(self):
        assert training_configs(config(log_every=7))[0].log_every == 7
        assert training_configs(config(data={"n_tokens": 999}))[1].n_tokens == 999

    def test_dictionary_fields_make_the_dictionary(self, toy_model):
        sae, transcoder = make_dictionaries(toy_model, config())
        assert (sae.architecture, sae.kind, sae.d_sae, sae.cfg.k) == ("topk", "sae", 64, 4)
        assert (transcoder.architecture, transcoder.kind, transcoder.d_sae) == ("jumprelu", "transcoder", 80)
        assert (transcoder.hook_name, transcoder.hook_name_out) == (
            TRANSCODER["hook"],
            TRANSCODER["hook_out"],
        )
        changed = make_dictionaries(
            toy_model,
            config(
                sae={"hook": "blocks.0.hook_resid_pre", "k": 8, "architecture": "batchtopk", "seed": 1,
                     "d_sae": None, "expansion": 2},
                transcoder={"kind": "skip_transcoder", "hook_out": "blocks.1.hook_attn_out", "architecture": "relu"},
            ),
        )  # fmt: skip
        assert (changed[0].hook_name, changed[0].architecture, changed[0].cfg.k, changed[0].d_sae) == (
            "blocks.0.hook_resid_pre", "batchtopk", 8, 320
        )  # fmt: skip
        assert not torch.equal(changed[0].W_dec[:64], sae.W_dec)  # seed
        assert changed[1].kind == "skip_transcoder" and changed[1].W_skip is not None
        assert changed[1].hook_name_out == "blocks.1.hook_attn_out" and changed[1].architecture == "relu"

    def test_encoder_init_norm_makes_the_encoder_and_defaults_to_the_configs(self, toy_model):
        from interp.dictionaries.base import ENCODER_INIT_NORM

        default = make_dictionaries(toy_model, config())
        assert "encoder_init_norm" not in train_toml(config())  # unset: the dictionary config's default
        changed = make_dictionaries(
            toy_model, config(sae={"encoder_init_norm": 0.25}, transcoder={"encoder_init_norm": 2.0})
        )
        for d, norm in [(default[0], ENCODER_INIT_NORM), (default[1], ENCODER_INIT_NORM)]:
            torch.testing.assert_close(d.W_enc.norm(dim=0), torch.full((d.d_sae,), norm))
        for d, norm in [(changed[0], 0.25), (changed[1], 2.0)]:
            torch.testing.assert_close(d.W_enc.norm(dim=0), torch.full((d.d_sae,), norm))
            assert d.cfg.encoder_init_norm == norm
        torch.testing.assert_close(changed[0].W_dec, default[0].W_dec)  # only the encoder's scale
        with pytest.raises(
            ConfigError, match="dictionary.0.encoder_init_norm: Input should be greater than 0"
        ):
            config(sae={"encoder_init_norm": 0})

    def test_data_fields_make_the_rows(self, toy_model):
        def first(**data):
            tokens, mask = next(
                token_rows(toy_model, config(data=data).data).batches(config(data=data).data.model_batch)
            )
            return tokens, mask

        tokens, mask = first()
        assert tokens.shape == (16, 32) and not mask.all()  # one document per row, padded
        assert first(context_length=8)[0].shape == (16, 8)
        assert first(model_batch=4)[0].shape == (4, 32)
        assert not torch.equal(first(seed=1)[0], tokens)
        packed, packed_mask = first(pack=True)
        assert packed_mask.all() and (packed == toy_model.tokenizer.eos_token_id).any()

    def test_file_fields_choose_the_documents(self, tmp_path, toy_model):
        (tmp_path / "a.jsonl").write_text('{"text": " Mary went home", "title": " the store"}\n')
        (tmp_path / "b.txt").write_text(" Mary\n John\n\n Mary went\n")
        (tmp_path / "train.toml").write_text(
            'checkpoint_every = 0\n[data]\nfiles = ["a.jsonl"]\ntext_field = "title"\ncontext_length = 4\n'
            'pack = false\n[[dictionary]]\nname = "d"\nhook = "blocks.0.hook_resid_pre"\nd_sae = 8\nk = 2\n'
        )
        loaded = load_train_config(tmp_path / "train.toml")
        assert loaded.data.files == [str(tmp_path / "a.jsonl")]  # relative to the config file

        def read(**data):
            return list(documents(loaded.data.model_copy(update=data)))

        assert read() == [" the store"] and read(text_field="text") == [" Mary went home"]
        txt = [str(tmp_path / "b.txt")]
        assert read(files=txt) == [" Mary", " John", "", " Mary went"]
        assert read(files=txt, sample_by="paragraph") == [" Mary\n John", " Mary went"]

    def test_dataset_fields_reach_the_loader(self, monkeypatch):
        from interp.data import corpus

        calls = []
        monkeypatch.setattr(
            corpus, "dataset_documents", lambda name, **kw: calls.append((name, kw)) or iter([])
        )
        data = {"corpus": None, "dataset": "json", "dataset_config": "c", "split": "validation",
                "data_files": ["x.jsonl"], "text_field": "body"}  # fmt: skip
        list(documents(config(data=data).data))
        assert (
            calls[0][0] == "json"
            and calls[0][1]["config_name"] == "c"
            and calls[0][1]["split"] == "validation"
        )
        assert calls[0][1]["data_files"][0].endswith("x.jsonl") and calls[0][1]["text_field"] == "body"

    def test_model_fields_reach_load_model(self, monkeypatch, tmp_path):
        import interp.model.loading as loading

        seen = {}

        def refuse(source, **kw):
            seen.update(source=source, **kw)
            raise InputError("stop here")

        monkeypatch.setattr(loading, "load_model", refuse)
        with pytest.raises(InputError, match="stop here"):
            run_training(
                config(model={"weights": "folded", "dtype": "bfloat16"}), tmp_path / "m", progress=False
            )
        assert seen == {"source": "toy", "device": "cpu", "dtype": "bfloat16", "weights": "folded"}

    def test_checkpoint_every_sets_how_often_a_checkpoint_is_written(self, straight, tmp_path):
        out, _ = straight
        assert (out / "run.log").read_text().count("checkpoint after") == 3 + 1  # 1000, 2000, 3000 + final
        run_training(config(checkpoint_every=0), tmp_path / "none", progress=False)
        assert (tmp_path / "none" / "run.log").read_text().count("checkpoint after") == 1  # the final one


def test_data_that_ends_before_the_budget_is_said_and_recorded(tmp_path, toy_model):
    words = " Mary John went to the store and gave a drink".split(" ")
    (tmp_path / "a.txt").write_text("\n".join(" ".join(words[1 + i % 5 :]) for i in range(200)))
    changes = dict(
        data={"corpus": None, "files": [str(tmp_path / "a.txt")], "n_tokens": 100000, "eval_tokens": 100}
    )
    summary = run_training(config(**changes), tmp_path / "out", progress=False)
    assert summary["data_exhausted"] and summary["dictionaries"]["resid1"]["tokens_trained"] < 2000
    assert "the data ended after" in (tmp_path / "out" / "run.log").read_text()


def test_the_cli_trains_and_reports_and_refuses_a_bad_config_with_exit_2(tmp_path, capsys):
    import tomllib  # noqa: F401  (the file below is TOML)

    path = tmp_path / "train.toml"
    path.write_text(
        'checkpoint_every = 0\n[model]\nsource = "toy"\ndevice = "cpu"\n[data]\ncorpus = "toy"\n'
        "context_length = 32\npack = false\nn_tokens = 1200\neval_tokens = 100\nmodel_batch = 16\n"
        '[[dictionary]]\nname = "r"\nhook = "blocks.0.hook_resid_pre"\nd_sae = 32\nk = 4\n'
        "batch_tokens = 200\nbuffer_tokens = 400\n"
    )
    assert main(["train", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "r: topk sae on blocks.0.hook_resid_pre, 1200 tokens; explained variance" in said
    assert load_dictionary(tmp_path / "out" / "r").d_sae == 32
    path.write_text(path.read_text().replace("k = 4", "k = 4\nkk = 1"))
    assert main(["train", str(path), "--out", str(tmp_path / "out2")]) == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "out2").exists()


def test_the_shipped_training_config_is_valid():
    """experiments/train_toy_dictionaries.toml parses and validates as an `interp train` config."""
    from pathlib import Path

    from interp.runner.training_config import load_train_config

    path = Path(__file__).resolve().parents[1] / "experiments" / "train_toy_dictionaries.toml"
    config = load_train_config(path)
    assert len(config.dictionary) >= 2
