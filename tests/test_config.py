"""Experiment configs: the documented shape validates; bad fields are named with what is allowed."""

from __future__ import annotations

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
            r"analysis.0.method: Input should be 'zero', 'mean' or 'resample'",
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
