"""Task 'custom' from a pairs file (JSONL or CSV, relative to the config): the same pairs as inline ones,
and errors that name the file, the line and the field."""

from __future__ import annotations

import json

import pytest

from interp.data.prompts import PromptError
from interp.data.tasks import build_pairs
from interp.runner.config import ConfigError, load_config

PAIRS = [
    {"clean": "When Mary and John went to the store, John gave a drink to", "corrupted": "When Mary and John went to the store, Mary gave a drink to", "answer": " Mary", "wrong": " John"},
    {"clean": "When Anna and Tom went to the park, Tom gave a drink to", "corrupted": "When Anna and Tom went to the park, Anna gave a drink to", "answer": " Anna", "wrong": " Tom"},
]  # fmt: skip


def write_config(tmp_path, task_lines: str):
    (tmp_path / "exp.toml").write_text(
        f'[model]\nsource = "toy"\n\n[task]\nname = "custom"\n{task_lines}\n\n[[analysis]]\nkind = "dla_head"\n'
    )
    return tmp_path / "exp.toml"


def inline_config(tmp_path):
    body = "".join(
        "\n[[task.pairs]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in pair.items()) for pair in PAIRS
    )
    return write_config(tmp_path, body)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_pairs_file_gives_the_inline_pairs(tmp_path, toy_model, fmt):
    data = tmp_path / "data"
    data.mkdir()
    if fmt == "jsonl":
        (data / "pairs.jsonl").write_text("\n".join(json.dumps(p) for p in PAIRS) + "\n")
    else:
        import csv

        with (data / "pairs.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, ["clean", "corrupted", "answer", "wrong"])
            writer.writeheader()
            writer.writerows(PAIRS)
    from_file = build_pairs(
        load_config(write_config(tmp_path, f'pairs_file = "data/pairs.{fmt}"')).task, toy_model, 0
    )
    inline_dir = tmp_path / "inline"
    inline_dir.mkdir()
    inline = build_pairs(load_config(inline_config(inline_dir)).task, toy_model, 0)
    assert (from_file.clean_tokens == inline.clean_tokens).all() and (from_file.answer == inline.answer).all()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"clean": "a", "corrupted": "b", "answer": " c"}\n', r"pairs\.jsonl line 1: missing wrong"),
        (json.dumps(PAIRS[0]) + "\n[1, 2]\n", r"line 2: a pair is a JSON object, not list"),
        (json.dumps(PAIRS[0]) + "\n{oops\n", r"line 2: not valid JSON"),
        (json.dumps({**PAIRS[0], "answer": ""}) + "\n", r"line 1: answer must be a non-empty string"),
        (json.dumps({**PAIRS[0], "extra": "x"}) + "\n", r"line 1: unknown field 'extra'"),
        ("", r"holds no pairs"),
    ],
)
def test_bad_lines_are_named(tmp_path, content, message):
    (tmp_path / "pairs.jsonl").write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, 'pairs_file = "pairs.jsonl"'))


def test_bad_files_and_mixtures_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(write_config(tmp_path, 'pairs_file = "missing.jsonl"'))
    (tmp_path / "pairs.txt").write_text("x")
    with pytest.raises(ConfigError, match="use a .jsonl"):
        load_config(write_config(tmp_path, 'pairs_file = "pairs.txt"'))
    (tmp_path / "p.csv").write_text("clean,corrupted,answer\na,b,c\n")
    with pytest.raises(ConfigError, match="line 1: the header must name the columns"):
        load_config(write_config(tmp_path, 'pairs_file = "p.csv"'))


def test_token_errors_name_the_files_line(tmp_path, toy_model):
    bad = {**PAIRS[1], "corrupted": "When Anna and Tom went to the park, the tall Anna gave a drink to"}
    (tmp_path / "pairs.jsonl").write_text(json.dumps(PAIRS[0]) + "\n\n" + json.dumps(bad) + "\n")
    config = load_config(write_config(tmp_path, 'pairs_file = "pairs.jsonl"'))
    with pytest.raises(
        PromptError,
        match=r"Pair 1 \(pairs\.jsonl line 3\): clean and corrupted prompts have different token lengths",
    ):
        build_pairs(config.task, toy_model, 0)
