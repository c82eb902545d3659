"""Task 'custom' from a pairs file (JSONL or CSV, relative to the config): the same pairs as inline ones,
and errors that name the file, the line and the field."""

from __future__ import annotations

import json
import os

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


class TestReadAsAFile:
    """The parser reads files as files: it sees the exact bytes of a regular file of bounded size, so
    whatever is valid CSV or JSON Lines comes through unchanged, and anything that is not a regular file
    is refused before it is read."""

    def write_csv(self, path, rows, **options):
        import csv

        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, ["clean", "corrupted", "answer", "wrong"], **options)
            writer.writeheader()
            writer.writerows(rows)
        return path

    @pytest.mark.parametrize("newline", ["\n", "\r\n"])
    def test_a_quoted_csv_field_keeps_its_newline(self, tmp_path, newline):
        from interp.data.tasks.custom import read_pairs_file

        first = {**PAIRS[0], "clean": f"line one{newline}line two"}
        path = self.write_csv(tmp_path / "p.csv", [first, PAIRS[1]], lineterminator=newline)
        rows = read_pairs_file(path)
        assert rows[0]["clean"] == first["clean"] and rows[1]["clean"] == PAIRS[1]["clean"]
        assert [r["line"] for r in rows] == ["2", "4"]  # the line each row starts on

    def test_a_multiline_row_is_named_by_the_line_it_starts_on(self, tmp_path):
        rows = [PAIRS[0], {**PAIRS[1], "clean": "a\nb\nc", "wrong": ""}]
        self.write_csv(tmp_path / "p.csv", rows)
        with pytest.raises(ConfigError, match=r"p\.csv line 3: wrong must be a non-empty string"):
            load_config(write_config(tmp_path, 'pairs_file = "p.csv"'))

    def test_a_duplicated_jsonl_key_is_refused_naming_line_and_key(self, tmp_path):
        twice = json.dumps(PAIRS[1])[:-1] + ', "clean": "x"}'
        (tmp_path / "pairs.jsonl").write_text(json.dumps(PAIRS[0]) + "\n" + twice + "\n")
        with pytest.raises(ConfigError, match=r"pairs\.jsonl line 2: the key 'clean' is given twice"):
            load_config(write_config(tmp_path, 'pairs_file = "pairs.jsonl"'))

    @pytest.mark.parametrize("char", ["\u2028", "\u2029", "\u0085"])
    def test_jsonl_lines_end_at_newline_only(self, tmp_path, char):
        from interp.data.tasks.custom import read_pairs_file

        pair = {**PAIRS[0], "clean": f"before{char}after"}
        path = tmp_path / "pairs.jsonl"
        path.write_bytes((json.dumps(pair, ensure_ascii=False) + "\r\n" + json.dumps(PAIRS[1])).encode())
        rows = read_pairs_file(path)
        assert [r["clean"] for r in rows] == [pair["clean"], PAIRS[1]["clean"]]
        assert [r["line"] for r in rows] == ["1", "2"]

    @pytest.mark.parametrize("fmt", ["csv", "jsonl"])
    def test_a_byte_order_mark_is_not_part_of_the_first_field(self, tmp_path, fmt):
        from interp.data.tasks.custom import read_pairs_file

        plain = tmp_path / f"plain.{fmt}"
        if fmt == "csv":
            self.write_csv(plain, PAIRS)
        else:
            plain.write_text("\n".join(json.dumps(p) for p in PAIRS) + "\n")
        marked = tmp_path / f"marked.{fmt}"
        marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
        assert read_pairs_file(marked) == read_pairs_file(plain)

    def test_a_directory_is_refused(self, tmp_path):
        (tmp_path / "dir.jsonl").mkdir()
        with pytest.raises(ConfigError, match=r"dir\.jsonl is a directory; give a regular file"):
            load_config(write_config(tmp_path, 'pairs_file = "dir.jsonl"'))

    def test_a_fifo_is_refused_without_waiting_for_a_writer(self, tmp_path):
        import subprocess
        import sys

        fifo = tmp_path / "pipe.jsonl"
        os.mkfifo(fifo)
        # a writer, so that a reader that opens the FIFO gets a valid pair instead of hanging the test
        writer = subprocess.Popen(
            [sys.executable, "-c", f"open({str(fifo)!r}, 'w').write({json.dumps(PAIRS[0])!r})"]
        )
        try:
            with pytest.raises(
                ConfigError, match=r"pipe\.jsonl is a FIFO \(named pipe\); give a regular file"
            ):
                load_config(write_config(tmp_path, 'pairs_file = "pipe.jsonl"'))
        finally:
            writer.kill()
            writer.wait()

    def test_a_device_is_refused(self, tmp_path):
        (tmp_path / "zero.jsonl").symlink_to("/dev/zero")  # a link to a regular file would be followed
        with pytest.raises(ConfigError, match=r"zero\.jsonl is a device; give a regular file"):
            load_config(write_config(tmp_path, 'pairs_file = "zero.jsonl"'))

    def test_a_file_over_the_size_limit_is_refused_naming_the_limit(self, tmp_path, monkeypatch):
        import interp.data.tasks.custom as custom

        content = "\n".join(json.dumps(p) for p in PAIRS) + "\n"
        (tmp_path / "pairs.jsonl").write_text(content)
        monkeypatch.setattr(custom, "MAX_BYTES", len(content.encode()) - 1)
        with pytest.raises(
            ConfigError,
            match=rf"is {len(content.encode())} bytes, more than the limit of {len(content.encode()) - 1} bytes",
        ):
            load_config(write_config(tmp_path, 'pairs_file = "pairs.jsonl"'))
        monkeypatch.setattr(custom, "MAX_BYTES", len(content.encode()))
        assert len(load_config(write_config(tmp_path, 'pairs_file = "pairs.jsonl"')).task.pairs) == 2
