"""The `interp` command."""

from __future__ import annotations

from interp.cli import main


def test_info_lists_versions_and_the_toy_model(capsys, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for package in ("transformer-lens", "transformers", "torch", "interp"):
        assert package in out
    assert "toy" in out and "microsoft/phi-2" in out


def test_run_prints_the_report_path_last(capsys, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[task]\nname = "induction"\nn_pairs = 4\n[[analysis]]\nkind = "head_scores"\n')
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == f"report: {(tmp_path / 'run' / 'report.html').resolve()}"
    assert main(["report", str(tmp_path / "run")]) == 0


def test_tasks_lists_tasks_and_kinds(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "ioi" in out and "induction" in out and "patch_head_out_by_pos" in out and "n_pairs" in out
