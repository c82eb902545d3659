"""The `feature_cards` analysis kind: paths relative to the config file, every dictionary checked against
the model before a unit runs, the compute is the library call, and a run writes the cards into
results.json and the browser into its report."""

from __future__ import annotations

import json
import os

import pytest
import torch
from helpers import ioi_pairs

from dictionaries.cards_files import feature_cards_files
from interp.base.errors import InputError
from interp.dictionaries import make_dictionary, save_dictionary
from interp.methods.features.evaluation import prompt_tokens
from interp.runner.config import ConfigError, load_config, parse_config
from interp.runner.kinds import spec_for
from interp.runner.registry import UnitContext

CTX = UnitContext(metric="logit_diff", seed=0, memory_budget=2**30)


def analysis(**options):
    return parse_config({"analysis": [{"kind": "feature_cards", **options}]}).analysis[0]


def test_paths_are_relative_to_the_config_file(tmp_path):
    for folder in ("configs/saes/a", "configs/c", "abs/b"):
        (tmp_path / folder).mkdir(parents=True)
    path = tmp_path / "configs" / "cards.toml"
    path.write_text(
        '[[analysis]]\nkind = "feature_cards"\ndictionaries = ["saes/a", "ABS"]\nfiles = ["text.txt"]\n'
        '[[analysis]]\nkind = "feature_cards"\nname = "b"\ndictionaries = ["c"]\ncorpus = "toy"\n',
        encoding="utf-8",
    )
    path.write_text(path.read_text().replace("ABS", str(tmp_path / "abs" / "b")), encoding="utf-8")
    first, second = load_config(path).analysis
    assert first.dictionaries == [str(tmp_path / "configs" / "saes" / "a"), str(tmp_path / "abs" / "b")]
    assert first.files == [str(tmp_path / "configs" / "text.txt")]
    assert second.corpus == "toy" and second.dictionaries == [str(tmp_path / "configs" / "c")]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"dictionaries": []}, r"dictionaries: List should have at least 1 item"),
        (
            {"dictionaries": ["x"], "corpus": "toy", "files": ["a.txt"]},
            r"give at most one data source: corpus or files \(given: corpus, files\)",
        ),
        ({"dictionaries": ["x"], "dataset": "json"}, r"does not read dataset; its options are: dictionaries"),
        (
            {"dictionaries": ["x"], "max_tokens": 4},
            r"does not read max_tokens = 4: no corpus or files is given",
        ),
        ({"dictionaries": ["x"], "context_length": 8}, r"context_length applies to a corpus / files source"),
        (
            {"dictionaries": ["x"], "corpus": "toy", "text_field": "t"},
            r"text_field applies to dataset / files",
        ),
        ({"dictionaries": ["x"], "files": ["a.txt"], "seed": 3}, r"seed applies to corpus, not to a files"),
        ({"dictionaries": ["x"], "features": [1], "top_n": 3}, r"does not read top_n = 3: features names"),
    ],
)
def test_options_refused_by_name(options, message):
    if options["dictionaries"] == ["x"]:  # a real dictionary, so that only the option is wrong
        options = {**options, "dictionaries": [feature_cards_files()["sae_a"]]}
    with pytest.raises(ConfigError, match=message):
        analysis(**options)


class TestCheckedAgainstTheModel:
    def check(self, toy_model, **options):
        spec_for("feature_cards").check(analysis(**options), toy_model)

    def test_a_good_config_passes(self, toy_model):
        files = feature_cards_files()
        self.check(
            toy_model, dictionaries=[files["sae_a"], files["sae_b"]], features=[7], files=[files["text_b"]],
            context_length=16,
        )  # fmt: skip
        with pytest.raises(InputError, match=r"fewer tokens than one packed row of context_length=128"):
            self.check(toy_model, dictionaries=[files["sae_a"]], files=[files["text_b"]])

    def test_a_missing_directory(self, toy_model, tmp_path):
        with pytest.raises(ConfigError, match=r"dictionary .*nowhere' is not a directory"):
            self.check(toy_model, dictionaries=[str(tmp_path / "nowhere")])

    def test_a_hook_the_model_lacks(self, toy_model, tmp_path):
        sae = make_dictionary("topk", d_in=160, d_sae=8, k=2, hook_name="blocks.7.hook_resid_pre")
        with pytest.raises(
            Exception, match=r"Unknown hook name 'blocks.7.hook_resid_pre'. The model has layers 0..3"
        ):
            self.check(toy_model, dictionaries=[str(save_dictionary(sae, tmp_path / "d"))])

    def test_a_width_that_is_not_the_hooks(self, toy_model, tmp_path):
        sae = make_dictionary("topk", d_in=640, d_sae=8, k=2, hook_name="blocks.1.hook_resid_pre")
        with pytest.raises(InputError, match=r"dictionaries\[0\] .*d_in=640.*160 wide"):
            self.check(toy_model, dictionaries=[str(save_dictionary(sae, tmp_path / "d"))])

    def test_features_beyond_the_dictionary(self, toy_model):
        with pytest.raises(InputError, match=r"features = \[8\] are not latents of .*sae_a \(0 .. 7\)"):
            self.check(toy_model, dictionaries=[feature_cards_files()["sae_a"]], features=[8])

    def test_a_corpus_file_that_is_not_there(self, toy_model, tmp_path):
        with pytest.raises(InputError, match=r"data file .*none.txt does not exist"):
            self.check(
                toy_model, dictionaries=[feature_cards_files()["sae_a"]], files=[str(tmp_path / "none.txt")]
            )
        with pytest.raises(InputError, match=r"corpus 'nothing' is not registered; known corpora: .*toy"):
            self.check(toy_model, dictionaries=[feature_cards_files()["sae_a"]], corpus="nothing")

    def test_a_corpus_that_is_a_directory_or_too_long(self, toy_model, tmp_path):
        (tmp_path / "dir.txt").mkdir()
        sae = feature_cards_files()["sae_a"]
        with pytest.raises(InputError, match=r"data directory .*dir.txt holds no"):
            self.check(toy_model, dictionaries=[sae], files=[str(tmp_path / "dir.txt")])
        fifo = tmp_path / "fifo.txt"
        os.mkfifo(fifo)
        with pytest.raises(InputError, match=r"fifo.txt is a FIFO \(named pipe\); give a regular file"):
            self.check(toy_model, dictionaries=[sae], files=[str(fifo)])
        with pytest.raises(
            InputError, match=r"feature_cards.context_length=129 is longer than the model's context \(128\)"
        ):
            self.check(
                toy_model, dictionaries=[sae], files=[feature_cards_files()["text_a"]], context_length=129
            )


def test_the_compute_is_the_library_call(toy_model):
    """Independent path: feature_cards called directly on the task's clean and corrupted prompts."""
    from interp.dictionaries import load_dictionary
    from interp.dictionaries.cards import feature_cards

    files = feature_cards_files()
    pairs = ioi_pairs(toy_model.tokenizer, 3, seed=2)
    options = analysis(dictionaries=[files["sae_a"], files["sae_b"]], features=[2, 5], n_contexts=2)
    computed = spec_for("feature_cards").compute(options, toy_model, pairs, CTX)
    corpus = [prompt_tokens(pairs)]  # 6 rows: one batch of model_batch 16
    expected = []
    for label in ("sae_a", "sae_b"):
        expected += feature_cards(
            toy_model, load_dictionary(files[label]), corpus, features=[2, 5], n_contexts=2, label=label
        )
    assert computed.extra["feature_cards"] == [card.to_dict() for card in expected]
    assert computed.labels["feature"] == ["sae_a #2", "sae_a #5", "sae_b #2", "sae_b #5"]
    assert computed.values[:, 0].tolist() == pytest.approx([c.density for c in expected])
    assert expected[0].n_tokens == 2 * int(pairs.lengths.sum())


def test_a_corpus_is_read_as_interp_train_reads_it(toy_model):
    """Independent path: the rows of `files` are text_source.token_rows's, cut at max_tokens (whole rows)."""
    from interp.dictionaries import load_dictionary
    from interp.dictionaries.cards import feature_cards
    from interp.runner.text_source import token_rows

    files = feature_cards_files()
    options = analysis(
        dictionaries=[files["sae_a"]], features=[1], files=[files["text_a"]], context_length=6, max_tokens=15,
        pack=False, model_batch=1,
    )  # fmt: skip
    computed = spec_for("feature_cards").compute(options, toy_model, ioi_pairs(toy_model.tokenizer, 2), CTX)
    rows = list(token_rows(toy_model, options))
    kept, total = [], 0
    for ids, length in rows:  # whole rows while the real tokens stay within max_tokens
        if kept and total + length > 15:
            break
        kept.append((ids, length))
        total += length
    assert 1 < len(kept) < len(rows)
    corpus = [
        (torch.tensor([ids]), torch.arange(6)[None, :] < length) for ids, length in kept
    ]  # model_batch 1: one row per batch
    expected = feature_cards(toy_model, load_dictionary(files["sae_a"]), corpus, features=[1], label="sae_a")
    assert computed.extra["feature_cards"] == [card.to_dict() for card in expected]
    assert expected[0].n_tokens == total


@pytest.mark.slow
def test_a_run_writes_cards_and_a_browser(tmp_path):
    from interp.runner.run import run_experiment

    files = feature_cards_files()
    config = parse_config(
        {
            "seed": 0,
            "task": {"name": "ioi", "n_pairs": 4},
            "analysis": [
                {"kind": "dla_head"},
                {
                    "kind": "feature_cards",
                    "dictionaries": [files["sae_a"]],
                    "top_n": 3,
                    "files": [files["text_a"]],
                    "context_length": 16,
                },
            ],
        }
    )
    results = run_experiment(config, tmp_path, progress=False)
    entry = results["analyses"][1]
    assert entry["dims"] == ["feature", "statistic"] and len(entry["feature_cards"]) == 3
    assert json.loads((tmp_path / "results.json").read_text())["analyses"][1] == entry
    page = (tmp_path / "report.html").read_text()
    assert page.count("function interpFeatures") == 1 and page.count("interpFeatures(document") == 1
    assert "feature_cards (feature_cards)" in page and "sae_a #" in page
