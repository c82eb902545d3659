"""The `feature_cards` analysis kind: paths relative to the config file, every dictionary checked against
the model before a unit runs, the compute is the library call, and a run writes the cards into
results.json and the browser into its report."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import ioi_pairs

from dictionaries.cards_files import feature_cards_files
from interp.base.errors import InputError
from interp.dictionaries import make_dictionary, save_dictionary
from interp.runner.config import ConfigError, load_config, parse_config
from interp.runner.kinds import spec_for
from interp.runner.registry import UnitContext

CTX = UnitContext(metric="logit_diff", seed=0, memory_budget=2**30)


def analysis(**options):
    return parse_config({"analysis": [{"kind": "feature_cards", **options}]}).analysis[0]


def test_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "cards.toml"
    path.write_text(
        '[[analysis]]\nkind = "feature_cards"\ndictionaries = ["saes/a", "/abs/b"]\ncorpus = "text.txt"\n'
        '[[analysis]]\nkind = "feature_cards"\nname = "b"\ndictionaries = ["c"]\ncorpus = "task"\n',
        encoding="utf-8",
    )
    first, second = load_config(path).analysis
    assert first.dictionaries == [str(tmp_path / "configs" / "saes" / "a"), "/abs/b"]
    assert first.corpus == str(tmp_path / "configs" / "text.txt")
    assert second.corpus == "task" and second.dictionaries == [str(tmp_path / "configs" / "c")]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"dictionaries": []}, r"dictionaries: List should have at least 1 item"),
        (
            {"dictionaries": ["x"], "corpus": "text.csv"},
            r"corpus must be 'task' or a .txt / .jsonl file",
        ),
        ({"dictionaries": ["x"], "corpus_rows": 4}, r"does not read corpus_rows = 4: corpus = 'task'"),
        ({"dictionaries": ["x"], "context_length": 8}, r"does not read context_length = 8: corpus = 'task'"),
        ({"dictionaries": ["x"], "features": [1], "top_n": 3}, r"does not read top_n = 3: features names"),
    ],
)
def test_options_refused_by_name(options, message):
    with pytest.raises(ConfigError, match=message):
        analysis(**options)


class TestCheckedAgainstTheModel:
    def check(self, toy_model, **options):
        spec_for("feature_cards").check(analysis(**options), toy_model)

    def test_a_good_config_passes(self, toy_model):
        files = feature_cards_files()
        self.check(
            toy_model, dictionaries=[files["sae_a"], files["sae_b"]], features=[7], corpus=files["text_b"]
        )

    def test_a_missing_directory(self, toy_model, tmp_path):
        with pytest.raises(InputError, match=r"dictionaries: .*nowhere is not a directory"):
            self.check(toy_model, dictionaries=[str(tmp_path / "nowhere")])

    def test_a_hook_the_model_lacks(self, toy_model, tmp_path):
        sae = make_dictionary("topk", d_in=160, d_sae=8, k=2, hook_name="blocks.7.hook_resid_pre")
        with pytest.raises(
            Exception, match=r"Unknown hook name 'blocks.7.hook_resid_pre'. The model has layers 0..3"
        ):
            self.check(toy_model, dictionaries=[str(save_dictionary(sae, tmp_path / "d"))])

    def test_a_width_that_is_not_the_hooks(self, toy_model, tmp_path):
        sae = make_dictionary("topk", d_in=640, d_sae=8, k=2, hook_name="blocks.1.hook_resid_pre")
        with pytest.raises(InputError, match=r"reads 640 dims at blocks.1.hook_resid_pre, which is 160 wide"):
            self.check(toy_model, dictionaries=[str(save_dictionary(sae, tmp_path / "d"))])

    def test_features_beyond_the_dictionary(self, toy_model):
        with pytest.raises(InputError, match=r"features = \[8\] are not latents of .*sae_a \(0 .. 7\)"):
            self.check(toy_model, dictionaries=[feature_cards_files()["sae_a"]], features=[8])

    def test_a_corpus_file_that_is_not_there(self, toy_model, tmp_path):
        with pytest.raises(InputError, match=r"corpus .*none.txt does not exist"):
            self.check(
                toy_model, dictionaries=[feature_cards_files()["sae_a"]], corpus=str(tmp_path / "none.txt")
            )

    def test_a_corpus_that_is_a_directory_or_too_long(self, toy_model, tmp_path):
        (tmp_path / "dir.txt").mkdir()
        sae = feature_cards_files()["sae_a"]
        with pytest.raises(InputError, match=r"dir.txt is a directory"):
            self.check(toy_model, dictionaries=[sae], corpus=str(tmp_path / "dir.txt"))
        with pytest.raises(
            InputError, match=r"context_length = 129 is longer than the model's context \(128\)"
        ):
            self.check(
                toy_model, dictionaries=[sae], corpus=feature_cards_files()["text_a"], context_length=129
            )


def test_the_compute_is_the_library_call(toy_model):
    """Independent path: feature_cards called directly on the task's clean prompts."""
    from interp.dictionaries import load_dictionary
    from interp.dictionaries.cards import feature_cards

    files = feature_cards_files()
    pairs = ioi_pairs(toy_model.tokenizer, 3, seed=2)
    options = analysis(dictionaries=[files["sae_a"], files["sae_b"]], features=[2, 5], n_contexts=2)
    computed = spec_for("feature_cards").compute(options, toy_model, pairs, CTX)
    positions = torch.arange(pairs.clean_tokens.shape[1])
    corpus = [(pairs.clean_tokens, positions[None, :] < pairs.lengths[:, None])]
    expected = []
    for label in ("sae_a", "sae_b"):
        expected += feature_cards(
            toy_model, load_dictionary(files[label]), corpus, features=[2, 5], n_contexts=2, label=label
        )
    assert computed.extra["feature_cards"] == [card.to_dict() for card in expected]
    assert computed.labels["feature"] == ["sae_a #2", "sae_a #5", "sae_b #2", "sae_b #5"]
    assert computed.values[:, 0].tolist() == pytest.approx([c.density for c in expected])
    assert expected[0].n_tokens == int(pairs.lengths.sum())


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
                    "corpus": files["text_a"],
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
