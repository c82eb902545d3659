"""Fault injection on the run directory and hostile input: each probe ends with exact values or a clear
error (exit 2, `error: ...`, a line in run.log), and nothing outside `--out` is touched."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from interp.base.errors import ModelSourceError
from interp.cli import main
from interp.model.loading import load_model
from interp.runner.config import parse_config, to_toml
from interp.runner.run import run_experiment
from interp.runner.store import RunDirectory

CONFIG = {
    "seed": 3,
    "batch_size": 4,
    "task": {"name": "ioi", "n_pairs": 8},
    "analysis": [{"kind": "patch_head_out", "name": "A"}, {"kind": "dla_head", "name": "B"}],
}


def values(out: Path) -> dict:
    results = json.loads((out / "results.json").read_text())
    return {a["name"]: a["values"] for a in results["analyses"]} | {"baseline": results["baseline"]}


def write_config(path: Path, **changes) -> Path:
    path.write_text(to_toml(parse_config({**CONFIG, **changes})))
    return path


def run_cli(*args: str) -> int:
    return main(["run", *map(str, args), "--quiet"])


def listing(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A finished run of CONFIG, and the config file it came from."""
    base = tmp_path_factory.mktemp("reference")
    config = write_config(base / "c.toml")
    assert run_cli(config, "--out", base / "run") == 0
    return base


class TestHostileLabels:
    @pytest.mark.parametrize(
        "name", ["../../shared", "/tmp/abs", "_baseline", "B/../A", "nul\x00name", "x" * 300, "A B", ""]
    )
    def test_refused_before_anything_is_written(self, tmp_path, capsys, name):
        config = tmp_path / "c.toml"
        analyses = [{"kind": "dla_head", "name": name}]
        config.write_text(json_to_toml({**CONFIG, "analysis": analyses}))
        before = listing(tmp_path)
        assert run_cli(config, "--out", tmp_path / "out") == 2
        assert "is not a valid analysis name" in capsys.readouterr().err
        assert listing(tmp_path) == before

    def test_names_differing_only_in_case_collide(self, tmp_path, capsys):
        config = tmp_path / "c.toml"
        config.write_text(json_to_toml({**CONFIG, "analysis": [{"kind": "dla_head", "name": "Heads"}] * 1
                                        + [{"kind": "patch_head_out", "name": "heads"}]}))  # fmt: skip
        assert run_cli(config, "--out", tmp_path / "out") == 2
        assert "must be unique" in capsys.readouterr().err


def json_to_toml(data: dict) -> str:
    """TOML for configs that parse_config would refuse (so to_toml cannot write them)."""
    lines = [f"seed = {data['seed']}", f"batch_size = {data['batch_size']}", "[task]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in data["task"].items()]
    for analysis in data["analysis"]:
        lines.append("[[analysis]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in analysis.items()]
    return "\n".join(lines) + "\n"


class TestOwnership:
    def test_run_files_without_a_manifest_are_refused_then_cleared_with_force(
        self, reference, tmp_path, capsys
    ):
        stale = tmp_path / "stale"
        shutil.copytree(reference / "run", stale)
        (stale / "run.json").unlink()
        (stale / "config.resolved.toml").unlink()
        other = write_config(tmp_path / "seed7.toml", seed=7)
        assert run_cli(other, "--out", stale) == 2
        assert "no run.json" in capsys.readouterr().err
        assert run_cli(other, "--out", stale, "--resume") == 2
        assert run_cli(other, "--out", stale, "--force") == 0
        assert run_cli(other, "--out", tmp_path / "fresh") == 0
        assert values(stale) == values(tmp_path / "fresh")

    def test_units_of_another_config_are_recomputed_not_trusted(self, reference, tmp_path, capsys):
        other = write_config(tmp_path / "seed7.toml", seed=7)
        out = tmp_path / "seed7"
        assert run_cli(other, "--out", out) == 0
        expected = values(out)
        shutil.rmtree(out / "units")
        shutil.copytree(reference / "run" / "units", out / "units")  # seed 3's units under seed 7
        assert run_cli(other, "--out", out, "--resume") == 0
        assert "belongs to config" in capsys.readouterr().err
        assert values(out) == expected
        assert "recomputing" in (out / "run.log").read_text()

    def test_unrelated_files_are_refused_even_with_force(self, reference, tmp_path, capsys):
        out = tmp_path / "mine"
        out.mkdir()
        (out / "results.json").write_text("my own results")
        (out / "notes.txt").write_text("keep me")
        for extra in ([], ["--force"]):
            assert run_cli(reference / "c.toml", "--out", out, *extra) == 2
        assert "not part of an interp run (notes.txt)" in capsys.readouterr().err
        assert (out / "results.json").read_text() == "my own results"

    def test_a_damaged_manifest_is_refused_then_cleared_with_force(self, reference, tmp_path, capsys):
        out = tmp_path / "damaged"
        shutil.copytree(reference / "run", out)
        (out / "run.json").write_text("{not json")
        assert run_cli(reference / "c.toml", "--out", out, "--resume") == 2
        assert "run.json is damaged" in capsys.readouterr().err
        assert run_cli(reference / "c.toml", "--out", out, "--force") == 0
        assert values(out) == values(reference / "run")


class TestDamagedUnits:
    def copy(self, reference: Path, tmp_path: Path) -> tuple[Path, Path]:
        out = tmp_path / "run"
        shutil.copytree(reference / "run", out)
        return out, sorted((out / "units" / "A").glob("*.safetensors"))[0]

    def test_overwritten_values_are_recomputed(self, reference, tmp_path, capsys):
        out, unit = self.copy(reference, tmp_path)
        data = bytearray(unit.read_bytes())
        data[-8:] = b"\x00\x00\x80\x7f" * 2  # the last values become inf; the header is intact
        unit.write_bytes(bytes(data))
        assert run_cli(reference / "c.toml", "--out", out, "--resume") == 0
        assert (
            f"recomputing {unit}" in capsys.readouterr().err and "checksum" in (out / "run.log").read_text()
        )
        assert values(out) == values(reference / "run")

    @pytest.mark.parametrize("keep", [0, 5, 40])
    def test_truncated_units_are_recomputed(self, reference, tmp_path, capsys, keep):
        out, unit = self.copy(reference, tmp_path)
        unit.write_bytes(unit.read_bytes()[:keep])
        assert run_cli(reference / "c.toml", "--out", out, "--resume") == 0
        assert f"recomputing {unit}: it cannot be read" in capsys.readouterr().err
        assert values(out) == values(reference / "run")
        assert load_file(unit)["values"].numel() > 0


class TestSymbolicLinks:
    """Nothing opens a run file through a symbolic link: a link where a run file goes is refused before
    anything is written (a link planted in a shared directory must not make a run write elsewhere); a unit
    that is a link is not trusted, and is recomputed."""

    @pytest.mark.parametrize(
        "name",
        [".lock", "run.log", "run.json", "config.resolved.toml", "results.json", "tensors.safetensors",
         "report.html", "units", "units/A"],
    )  # fmt: skip
    def test_a_link_where_a_run_file_goes_is_refused_and_its_target_untouched(
        self, reference, tmp_path, capsys, name
    ):
        victim = tmp_path / "victim"
        victim.mkdir()
        (victim / "precious").write_text("keep me\n")
        target = victim if name.startswith("units") else victim / "precious"
        out = tmp_path / "out"
        (out / name).parent.mkdir(parents=True)
        (out / name).symlink_to(target)
        before = {p: p.read_bytes() for p in victim.rglob("*")}
        for extra in ([], ["--resume"], ["--force"]):
            assert run_cli(reference / "c.toml", "--out", out, *extra) == 2
            assert "symbolic link" in capsys.readouterr().err
        assert {p: p.read_bytes() for p in victim.rglob("*")} == before
        (out / name).unlink()
        assert run_cli(reference / "c.toml", "--out", out, "--force") == 0
        assert values(out) == values(reference / "run")

    def test_a_unit_that_is_a_link_is_recomputed_with_a_warning(self, reference, tmp_path, capsys):
        out = tmp_path / "run"
        shutil.copytree(reference / "run", out)
        unit = sorted((out / "units" / "A").glob("*.safetensors"))[0]
        outside = tmp_path / "outside.safetensors"
        outside.write_bytes(unit.read_bytes())  # a valid unit of this very run, but not in the directory
        unit.unlink()
        unit.symlink_to(outside)
        assert run_cli(reference / "c.toml", "--out", out, "--resume") == 0
        assert f"recomputing {unit}: it is a symbolic link (to {outside})" in capsys.readouterr().err
        assert not unit.is_symlink() and unit.is_file()
        assert outside.read_bytes() == (reference / "run" / "units" / "A" / unit.name).read_bytes()
        assert values(out) == values(reference / "run")

    def test_files_are_opened_without_following_a_link_planted_later(self, tmp_path):
        from interp.base.errors import FileKindError
        from interp.runner.store import RunLog, read_run_file

        target = tmp_path / "target"
        target.write_text("keep me\n")
        link = tmp_path / "run.log"
        link.symlink_to(target)
        RunLog(link)("a line")  # a log line is dropped, never written through the link
        assert target.read_text() == "keep me\n"
        with pytest.raises(FileKindError, match="is a symbolic link"):
            read_run_file(link)


class TestLock:
    def test_a_second_run_is_refused_naming_the_holder(self, reference, tmp_path, capsys):
        out = tmp_path / "locked"
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, str(out)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout.readline().strip() == "locked"  # synchronised on the child's word, no sleep
            assert run_cli(reference / "c.toml", "--out", out) == 2
            assert f"in use by another interp run (pid {holder.pid})" in capsys.readouterr().err
        finally:
            holder.stdin.close()
            holder.wait()
        assert run_cli(reference / "c.toml", "--out", out) == 0  # released when its holder ends

    def test_in_process_runs_on_one_directory_exclude_each_other(self, reference, tmp_path):
        config = parse_config(CONFIG)
        first = RunDirectory(tmp_path / "d")
        first.open(config, resume=False, force=False)
        try:
            with pytest.raises(Exception, match="in use by another interp run"):
                run_experiment(config, tmp_path / "d", progress=False)
        finally:
            first.close()


HOLD_LOCK = """
import fcntl, os, sys
from pathlib import Path
out = Path(sys.argv[1]); out.mkdir(parents=True)
handle = open(out / ".lock", "a+"); fcntl.flock(handle, fcntl.LOCK_EX)
handle.write(str(os.getpid())); handle.flush()
print("locked", flush=True)
sys.stdin.read()
"""


class TestCheckedBeforeCompute:
    @pytest.mark.parametrize(
        "args, message",
        [
            (["--device", "gpu0"], "device 'gpu0' is not a torch device"),
            (["--model", "phi-2x"], "neither an existing directory nor a hub id"),  # a mistyped alias
            (["--model", "/nowhere/at/all"], "neither an existing directory nor a hub id"),
        ],
    )
    def test_a_failed_start_does_not_block_the_corrected_command(
        self, reference, tmp_path, capsys, args, message
    ):
        out = tmp_path / "out"
        assert run_cli(reference / "c.toml", "--out", out, *args) == 2
        assert message in capsys.readouterr().err
        if args[0] == "--device":  # refused with the config, before --out is touched
            assert not out.exists()
        else:
            assert "error:" in (out / "run.log").read_text()
        assert run_cli(reference / "c.toml", "--out", out) == 0

    def test_prompts_longer_than_the_context(self, tmp_path, capsys):
        config = tmp_path / "c.toml"
        config.write_text(to_toml(parse_config({
            "task": {"name": "induction", "n_pairs": 2, "seq_len": 100},
            "analysis": [{"kind": "patch_head_out"}],
        })))  # fmt: skip
        assert run_cli(config, "--out", tmp_path / "out") == 2
        assert "199 tokens, more than the model's context of 128" in capsys.readouterr().err
        assert not (tmp_path / "out" / "units").exists()

    @pytest.mark.parametrize(
        "analysis, message",
        [
            ({"kind": "path_patch", "senders": [[9, 0]]}, "senders [[9, 0]] are not heads of this model"),
            ({"kind": "path_patch", "receivers": [[2, 7]]}, "receivers [[2, 7]] are not heads of this model"),
            (
                {"kind": "path_patch", "senders": [[3, 1]], "receivers": [[2, 0]]},
                "not before the earliest receiver",
            ),
        ],
    )
    def test_path_patching_heads(self, tmp_path, capsys, analysis, message):
        config = write_config(tmp_path / "c.toml", analysis=[analysis])
        assert run_cli(config, "--out", tmp_path / "out") == 2
        assert message in capsys.readouterr().err

    def test_negative_heads_and_empty_receivers_are_config_errors(self, tmp_path, capsys):
        for analysis in (
            {"kind": "path_patch", "senders": [[3, -1]]},
            {"kind": "path_patch", "receivers": []},
        ):
            config = tmp_path / "c.toml"
            config.write_text(json_to_toml({**CONFIG, "analysis": [analysis]}))
            assert run_cli(config, "--out", tmp_path / "out") == 2
        err = capsys.readouterr().err
        assert "greater than or equal to 0" in err and "at least 1 item" in err

    def test_equal_clean_and_corrupted_stop_before_the_analyses(self, tmp_path, capsys):
        same = "When Mary and John went to the store, John gave a drink to"
        config = tmp_path / "c.toml"
        config.write_text(to_toml(parse_config({
            "task": {"name": "custom", "pairs": [{"clean": same, "corrupted": same, "answer": " Mary", "wrong": " John"}]},
            "analysis": [{"kind": "patch_head_out"}],
        })))  # fmt: skip
        assert run_cli(config, "--out", tmp_path / "out") == 2
        assert "give the same logit_diff" in capsys.readouterr().err
        assert not (tmp_path / "out" / "units" / "patch_head_out").exists()


class TestCleanErrors:
    def test_seed_out_of_range(self, tmp_path, capsys):
        config = tmp_path / "c.toml"
        config.write_text('seed = 99999999999999999999\n[[analysis]]\nkind = "dla_head"\n')
        assert run_cli(config, "--out", tmp_path / "o") == 2
        assert "seed" in capsys.readouterr().err

    def test_non_utf8_config(self, tmp_path, capsys):
        config = tmp_path / "c.toml"
        config.write_bytes(b'seed = 1\n# \xff\xfe\n[[analysis]]\nkind = "dla_head"\n')
        assert run_cli(config, "--out", tmp_path / "o") == 2
        assert "not UTF-8" in capsys.readouterr().err

    def test_out_is_a_file(self, reference, tmp_path, capsys):
        (tmp_path / "file").write_text("x")
        assert run_cli(reference / "c.toml", "--out", tmp_path / "file") == 2
        assert "is a file" in capsys.readouterr().err

    @pytest.mark.parametrize(
        "content, message",
        [
            (None, "has no results.json"),
            (b'{"model": {', "is not valid JSON"),
            (b"{}", "is not an interp results file"),
            (b"\x00\xff\xfe binary", "is not valid JSON"),
        ],
    )
    def test_report_failures(self, tmp_path, capsys, content, message):
        if content is not None:
            (tmp_path / "results.json").write_bytes(content)
        assert main(["report", str(tmp_path)]) == 2
        assert message in capsys.readouterr().err

    @pytest.mark.parametrize("kind, message", [("dir", "is a directory"), ("fifo", "is a FIFO")])
    def test_report_of_a_results_file_that_is_not_a_file(self, tmp_path, capsys, kind, message):
        path = tmp_path / "results.json"
        path.mkdir() if kind == "dir" else os.mkfifo(path)  # a FIFO must not hang the report
        assert main(["report", str(tmp_path)]) == 2
        assert message in capsys.readouterr().err

    def test_report_of_a_missing_directory(self, tmp_path, capsys):
        assert main(["report", str(tmp_path / "nowhere")]) == 2
        assert "is not a directory" in capsys.readouterr().err

    def test_debug_shows_the_traceback(self, tmp_path, capsys):
        config = tmp_path / "c.toml"
        config.write_text('[[analysis]]\nkind = "dla_head"\n')
        assert (
            main(["--debug", "run", str(config), "--out", str(tmp_path / "o"), "--device", "gpu0", "--quiet"])
            == 2
        )
        assert "Traceback" in capsys.readouterr().err


def test_stale_temporary_files_are_removed_on_resume(reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference / "run", out)
    stale = [out / ".report.html.abc123.tmp", out / "units" / "A" / ".batch-00000.safetensors.xyz.tmp"]
    for path in stale:
        path.write_bytes(b"half a write")
    assert run_cli(reference / "c.toml", "--out", out, "--resume") == 0
    assert not any(path.exists() for path in stale)


class TestModelSources:
    def test_empty_source(self):
        with pytest.raises(ModelSourceError, match="The model source is empty"):
            load_model("")

    def test_empty_tokenizer_file(self, tmp_path, tiny_phi_dir):
        directory = tmp_path / "m"
        shutil.copytree(tiny_phi_dir, directory)
        (directory / "tokenizer.json").write_text("")
        with pytest.raises(ModelSourceError, match="tokenizer.*tokenizer.json"):
            load_model(directory)

    def test_truncated_weights(self, tmp_path, tiny_phi_dir):
        directory = tmp_path / "m"
        shutil.copytree(tiny_phi_dir, directory)
        weights = directory / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
        with pytest.raises(ModelSourceError, match="model.safetensors"):
            load_model(directory)


@pytest.mark.slow
def test_random_kills_resume_to_identical_results(reference, tmp_path):
    """Bounded: three SIGKILLs at seeded random points, each followed by --resume."""
    config = write_config(tmp_path / "c.toml", batch_size=1)
    expected_out = tmp_path / "whole"
    assert run_cli(config, "--out", expected_out) == 0
    rng = random.Random(11)
    for trial in range(3):
        out = tmp_path / f"killed-{trial}"
        kill_after = rng.randint(1, 20)
        process = subprocess.Popen(
            [sys.executable, "-m", "interp", "run", str(config), "--out", str(out), "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        while process.poll() is None and len(list(out.glob("units/*/*.safetensors"))) < kill_after:
            time.sleep(0.02)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        assert run_cli(config, "--out", out, "--resume") == 0
        assert values(out) == values(expected_out)
        assert not list(out.rglob(".*.tmp"))


def test_disk_full_names_the_file_and_keeps_finished_units(reference, tmp_path, capsys):
    mount = tmp_path / "small"
    mount.mkdir()
    # tmpfs of 512 KiB: the units fit, the ~6 MB report does not
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here (needs root and mount rights): {result.stderr.decode().strip()}"
        )
    try:
        out = mount / "run"
        assert run_cli(reference / "c.toml", "--out", out) == 2
        err = capsys.readouterr().err
        assert "No space left on device" in err and "cannot write" in err
        assert len(list(out.glob("units/*/*.safetensors"))) > 0  # finished work kept
        assert not list(out.rglob(".*.tmp"))
    finally:
        subprocess.run(["umount", str(mount)], check=False)
