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


def test_demo_writes_a_report(capsys, tmp_path):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == f"report: {(tmp_path / 'report.html').resolve()}"
    page = (tmp_path / "report.html").read_text()
    assert "induction score" in page and "IOI behaviour" in page
