"""The `attribution_graph` analysis kind: a config with transcoder directories runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import CHROMIUM, ioi_pairs, launch_chromium

import interp.runner.run as experiment
from interp.dictionaries import save_dictionary
from interp.methods.graphs.attribution import attribution_graph
from interp.methods.graphs.pruning import prune_graph
from interp.runner.config import ConfigError, load_config, parse_config
from methods.graphs.models import random_transcoders


def save_transcoders(directory: Path, seed: int = 0, d_sae: int = 64) -> list[str]:
    names = []
    for layer, tc in enumerate(random_transcoders(4, 160, d_sae, "topk", k=8, seed=seed)):
        save_dictionary(tc, directory / f"layer{layer}")
        names.append(f"layer{layer}")
    return names


@pytest.fixture(scope="module")
def toy_transcoders(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("transcoders")
    save_transcoders(directory)
    return directory


def config_text(transcoders: list[str], **options) -> str:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in options.items())
    return (
        'seed = 1\n[task]\nname = "ioi"\nn_pairs = 2\n[[analysis]]\nkind = "attribution_graph"\n'
        f"transcoders = {json.dumps(transcoders)}\ncheck_top = 2\n{extra}"
    )


@pytest.mark.slow
def test_a_run_writes_the_graph_its_scores_and_its_checks(tmp_path, toy_transcoders, toy_model):
    """Relative transcoder paths resolve against the config's folder; results.json holds the graph in
    circuit-tracer's layout, equal to `attribution_graph` + `prune_graph` called directly; the report draws it."""
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    relative = [str(Path("..") / "tc" / f"layer{i}") for i in range(4)]
    (tmp_path / "tc").symlink_to(toy_transcoders, target_is_directory=True)
    path = config_dir / "graph.toml"
    path.write_text(config_text(relative, node_threshold=0.9))
    config = load_config(path)
    assert config.analysis[0].transcoders == [str(tmp_path / "tc" / f"layer{i}") for i in range(4)]
    results = experiment.run_experiment(config, tmp_path / "run", progress=False)
    entry = results["analyses"][0]
    assert entry["kind"] == "attribution_graph" and entry["dims"] == ["node"]
    assert 0 <= entry["scores"]["replacement"] <= 1 and len(entry["checks"]) == 2
    graph = entry["graph"]
    assert graph["metadata"]["node_threshold"] == 0.9
    # the same graph as the Python API's, on the first pair's clean prompt
    from interp.data.tasks import build_pairs

    pairs = build_pairs(config.task, toy_model, config.seed)
    tokens = pairs.clean_tokens[0, : int(pairs.lengths[0])]
    from interp.dictionaries import load_dictionary

    direct = attribution_graph(toy_model, tokens, [load_dictionary(p) for p in layers(toy_transcoders)])
    pruned = prune_graph(direct, 0.9, 0.98)
    assert len(graph["links"]) == int(pruned.edge_mask.sum())
    assert sorted(entry["values"], reverse=True) == entry["values"]
    assert entry["values"][0] == pytest.approx(float(pruned.influence[pruned.node_mask].max()), rel=1e-5)
    report = (tmp_path / "run" / "report.html").read_text()
    assert "interpGraphView" in report and "checked by intervention" in report
    if Path(CHROMIUM).exists():
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                page = browser.new_page()
                errors = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto((tmp_path / "run" / "report.html").resolve().as_uri(), wait_until="load")
                assert page.locator(".interp-graph-node").count() == len(graph["nodes"])
                assert errors == []
            finally:
                browser.close()


def test_missing_and_mismatched_transcoders_are_refused_before_any_unit(tmp_path, toy_transcoders, toy_model):
    from interp.runner.worker import check_before_compute

    pairs = ioi_pairs(toy_model.tokenizer, 2)
    missing = parse_config(
        {"analysis": [{"kind": "attribution_graph", "transcoders": [str(tmp_path / "nope")]}]}
    )
    with pytest.raises(ConfigError, match=r"transcoders\[0\] = .*nope.* is not a directory"):
        check_before_compute(missing, toy_model, pairs)
    three = parse_config(
        {"analysis": [{"kind": "attribution_graph", "transcoders": layers(toy_transcoders, 3)}]}
    )
    with pytest.raises(ConfigError, match="3 transcoders given; the replacement model needs one per layer"):
        check_before_compute(three, toy_model, pairs)
    save_dictionary(random_transcoders(1, 160, 8, point="ln1.hook_out")[0], tmp_path / "wrong")
    wrong = parse_config(
        {
            "analysis": [
                {
                    "kind": "attribution_graph",
                    "transcoders": [*layers(toy_transcoders, 3), str(tmp_path / "wrong")],
                }
            ]
        }
    )
    with pytest.raises(ConfigError, match=r"transcoders\[3\] reads 'blocks.0.ln1.hook_out'"):
        check_before_compute(wrong, toy_model, pairs)


def layers(directory: Path, n: int = 4) -> list[str]:
    return [str(directory / f"layer{i}") for i in range(n)]


def test_options_it_would_ignore_are_refused():
    with pytest.raises(ConfigError, match="attribution_graph does not read pair = 1: a prompt is given"):
        parse_config(
            {"analysis": [{"kind": "attribution_graph", "transcoders": ["x"], "prompt": "a", "pair": 1}]}
        )
    with pytest.raises(ConfigError, match="transcoders"):
        parse_config({"analysis": [{"kind": "attribution_graph"}]})


def test_a_pair_beyond_the_task_is_an_error(toy_model, toy_transcoders):
    from interp.base.errors import InputError
    from interp.runner.kinds import spec_for
    from interp.runner.registry import UnitContext

    config = parse_config(
        {"analysis": [{"kind": "attribution_graph", "transcoders": layers(toy_transcoders), "pair": 5}]}
    )
    pairs = ioi_pairs(toy_model.tokenizer, 2)
    with pytest.raises(InputError, match="pair = 5, but the task has 2 pairs"):
        spec_for("attribution_graph").compute(
            config.analysis[0], toy_model, pairs, UnitContext("logit_diff", 0, 2**20)
        )
