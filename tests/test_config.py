"""Experiment configs: the documented shape validates; bad fields are named with what is allowed."""

from __future__ import annotations

import json
import tomllib

import pytest

from interp.runner.config import ConfigError, load_config, parse_config, to_toml

MINIMAL = {"analysis": [{"kind": "patch_head_out"}]}


def test_the_documented_shape_validates(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        """
seed = 0
[model]
source = "toy"
weights = "raw"
[task]
name = "custom"
pairs = [ { clean = "When Mary and John went to the store, John gave a drink to", corrupted = "When Mary and John went to the store, Mary gave a drink to", answer = " Mary", wrong = " John" } ]
metric = "logit_diff"
[[analysis]]
kind = "patch_head_out"
[[analysis]]
kind = "ablate_head"
method = "mean"
"""
    )
    config = load_config(path)
    assert config.task.pairs[0].answer == " Mary" and config.analysis[1].method == "mean"


def test_resolved_toml_round_trips(tmp_path):
    config = parse_config({**MINIMAL, "task": {"name": "ioi", "names": ["Mary", "John"]}})
    path = tmp_path / "r.toml"
    path.write_text(to_toml(config))
    assert load_config(path) == config


@pytest.mark.parametrize(
    "data, expected",
    [
        (
            {"analysis": [{"kind": "patch_head_outt"}]},
            r"analysis.0.kind: .*unknown analysis kind 'patch_head_outt'; did you mean 'patch_head_out'",
        ),
        (
            {**MINIMAL, "model": {"weights": "centred"}},
            r"model.weights: Input should be 'raw' or 'folded' \(got 'centred'\)",
        ),
        ({**MINIMAL, "model": {"dtype": "float16"}}, r"model.dtype: .*'bfloat16' \(got 'float16'\)"),
        (
            {**MINIMAL, "task": {"n_pairs": 0}},
            r"task.n_pairs: Input should be greater than or equal to 1 \(got 0\)",
        ),
        ({**MINIMAL, "task": {"nme": "ioi"}}, r"task.nme: Extra inputs are not permitted"),
        ({**MINIMAL, "task": {"name": "custom"}}, r"task 'custom' needs at least one entry in `pairs`"),
        ({"analysis": []}, r"analysis: List should have at least 1 item"),
        (
            {"analysis": [{"kind": "ablate_head", "method": "gaussian"}]},
            r"analysis.0.method: Input should be 'zero', 'mean', 'resample' or 'counterfactual'",
        ),
        (
            {"analysis": [{"kind": "dla_head"}, {"kind": "dla_head"}]},
            r"analysis names must be unique.*dla_head",
        ),
    ],
)
def test_bad_fields_are_named(data, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_config(data)


def test_bad_toml_and_missing_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("seed = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


class TestTaskOptions:
    """A task reads only its own options; the resolved config holds only those."""

    @pytest.mark.parametrize(
        "task, expected",
        [
            ({"n_pairs": 5}, r"task 'custom' does not read n_pairs; its options are: pairs, pairs_file"),
            ({"names": ["Mary", "John"]}, r"task 'custom' does not read names"),
            ({"seq_len": 4}, r"task 'custom' does not read seq_len"),
        ],
    )
    def test_custom_refuses_what_it_does_not_read(self, task, expected):
        with pytest.raises(ConfigError, match=expected):
            parse_config({**MINIMAL, "task": {"name": "custom", "pairs": [PAIR], **task}})

    def test_generated_tasks_refuse_each_others_options(self):
        with pytest.raises(ConfigError, match=r"task 'ioi' does not read seq_len"):
            parse_config({**MINIMAL, "task": {"name": "ioi", "seq_len": 4}})
        with pytest.raises(ConfigError, match=r"task 'induction' does not read names"):
            parse_config({**MINIMAL, "task": {"name": "induction", "names": ["Mary"]}})

    def test_the_resolved_config_holds_only_what_the_task_reads(self, tmp_path):
        config = parse_config({**MINIMAL, "task": {"name": "custom", "pairs": [PAIR]}})
        task = tomllib.loads(to_toml(config))["task"]
        assert set(task) == {"name", "metric", "prepend_bos", "pairs"}
        path = tmp_path / "r.toml"
        path.write_text(to_toml(config), encoding="utf-8")
        assert load_config(path) == config


PAIR = {
    "clean": "When Mary and John went to the store, John gave a drink to",
    "corrupted": "When Mary and John went to the store, Mary gave a drink to",
    "answer": " Mary",
    "wrong": " John",
}


class TestEveryValueRoundTrips:
    @pytest.mark.parametrize(
        "text",
        [
            "When 🐱 and John went to the store, John gave a drink to",  # beyond the BMP
            'a "quoted" back\\slash, a tab\there, a newline\nand DEL \x7f, NUL \x00, U+2028 \u2028 end',
        ],
    )
    def test_strings(self, tmp_path, text):
        config = parse_config({**MINIMAL, "task": {"name": "custom", "pairs": [{**PAIR, "clean": text}]}})
        path = tmp_path / "r.toml"
        path.write_text(to_toml(config), encoding="utf-8")
        assert load_config(path).task.pairs[0].clean == text

    def test_a_lone_surrogate_is_refused_by_field(self):
        with pytest.raises(ConfigError, match=r"task.pairs.0.clean: .*lone UTF-16 surrogate \(U\+D83D\)"):
            parse_config({**MINIMAL, "task": {"name": "custom", "pairs": [{**PAIR, "clean": "a \ud83d b"}]}})

    @pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
    def test_non_finite_numbers_in_toml_are_refused(self, tmp_path, value):
        path = tmp_path / "c.toml"
        path.write_text(f'[[analysis]]\nkind = "steer"\nmultipliers = [1.0, {value}]\n')
        with pytest.raises(ConfigError, match=r"analysis.0.multipliers.1: Input should be a finite number"):
            load_config(path)


def test_a_renamed_pairs_file_is_the_same_config(tmp_path):
    """The hash covers the pairs, not the file's name (nor its line numbers)."""
    from interp.runner.store import config_hash

    lines = [json.dumps(PAIR), json.dumps({**PAIR, "answer": " John", "wrong": " Mary"})]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "b.jsonl").write_text("\n\n".join(lines) + "\n")  # other line numbers, same pairs
    configs = [
        parse_config({**MINIMAL, "task": {"name": "custom", "pairs_file": name}}, base_dir=tmp_path)
        for name in ("a.jsonl", "b.jsonl")
    ]
    assert config_hash(configs[0]) == config_hash(configs[1])
    other = parse_config({**MINIMAL, "task": {"name": "custom", "pairs": [PAIR]}})
    assert config_hash(other) != config_hash(configs[0])


@pytest.mark.parametrize("device", ["meta", "xla", "cuda:x", "CPU", ""])
def test_devices_that_cannot_compute_are_refused(device):
    with pytest.raises(
        ConfigError,
        match=rf"model.device: .*device {device!r} is not a torch device a run can compute on; use auto, cpu",
    ):
        parse_config({**MINIMAL, "model": {"device": device}})


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_devices_allowed(device):
    assert parse_config({**MINIMAL, "model": {"device": device}}).model.device == device
