"""The `interp` command."""

from __future__ import annotations

import pytest

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
    path_patch = out[out.index("  path_patch:") :].split("\n  attrib_head_out:")[0]
    assert 'direction = "noising"' in path_patch and "as in Wang et al. and the Python API" in path_patch
    assert "not read with receivers = 'logits'" in path_patch


def _run_cli(tmp_path, config_text: str, *extra: str):
    config = tmp_path / "c.toml"
    config.write_text(config_text)
    return main(["run", str(config), "--out", str(tmp_path / "run"), "--quiet", *extra])


INDUCTION = '[task]\nname = "induction"\nn_pairs = 4\n[[analysis]]\nkind = "head_scores"\n'


@pytest.mark.parametrize("device", ["meta", "xla"])
def test_a_device_that_cannot_compute_is_a_user_error_before_anything_is_written(capsys, tmp_path, device):
    assert _run_cli(tmp_path, INDUCTION, "--device", device) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'c.toml'} is not a valid experiment config" in err
    assert (
        f"model.device: Value error, device '{device}' is not a torch device a run can compute on; use auto, cpu"
        in err
    )
    assert not (tmp_path / "run").exists()


def test_an_option_out_of_range_for_the_model_leaves_the_directory_to_the_corrected_config(capsys, tmp_path):
    bad = INDUCTION + '[[analysis]]\nkind = "steer"\nlayers = [7]\nn_samples = 0\n'
    assert _run_cli(tmp_path, bad) == 2
    err = capsys.readouterr().err
    assert "error: analysis 'steer' (steer): layers = [7] are not layers of this model; use 0 .. 4" in err
    assert not (tmp_path / "run" / "run.json").exists()
    assert _run_cli(tmp_path, bad.replace("[7]", "[4]")) == 0  # no --force needed


def test_help_and_tasks_do_not_import_torch_or_a_method():
    """`interp --help` answers before the heavy imports (and `interp tasks` needs none of them)."""
    import subprocess
    import sys

    probe = (
        "import sys, contextlib, io\n"
        "from interp.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    main(['tasks'])\n"
        "light = {'interp.methods', 'interp.methods.vocabulary'}\n"
        "print(sorted(m for m in sys.modules if (m == 'torch' or m.startswith(('interp.methods', 'transformer_lens')))"
        " and m not in light))\n"
    )  # methods.vocabulary (the ablation methods' one spelling, which the kinds' options use) imports nothing
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_public_api_is_imported_on_first_use_and_complete():
    """`import interp` loads no torch; every name in `interp.__all__` is there when asked for."""
    import subprocess
    import sys

    probe = (
        "import sys, interp\n"
        "light = 'torch' not in sys.modules\n"
        "missing = [n for n in interp.__all__ if getattr(interp, n, None) is None]\n"
        "from interp import *  # noqa\n"
        "print(light, missing, 'sweep' in dir(interp))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True [] True"
