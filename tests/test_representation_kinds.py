"""The representation kinds (`probe`, `sparse_probe`, `das`) run from a config: each equals its method
called directly on the prompts the kind documents, the learned subspaces load back from results.json
and steer, the report draws its sections, and bad labels files and options are refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from dictionary_files import saved
from helpers import CHROMIUM, open_offline_page

import interp.runner.run as experiment
from interp.base.errors import InputError
from interp.data.labelled_prompts import LabelsFileError, from_pairs, read_labels_file
from interp.data.tasks import build_pairs
from interp.methods.representations.das import das_steer, fit_das
from interp.methods.representations.probes import probe_layers
from interp.methods.representations.sparse_probes import sparse_probe
from interp.runner.config import ConfigError, load_config, parse_config
from interp.runner.kinds.representations import das_pairs
from interp.runner.subspaces import load_subspace

HOOKS = ["blocks.1.hook_resid_pre", "blocks.3.hook_resid_post"]
NAMES = ["Mary", "John", "Tom", "James"]
CONFIG = {
    "seed": 2,
    "task": {"name": "ioi", "n_pairs": 64, "names": NAMES},
    "analysis": [
        {"kind": "probe", "name": "io", "hooks": HOOKS},
        {"kind": "probe", "name": "which", "hooks": HOOKS[1:], "labels": "clean_or_corrupted"},
        {"kind": "sparse_probe", "name": "neurons", "ks": [1, 4], "n_random": 2},
        {
            "kind": "sparse_probe",
            "name": "latents",
            "dictionary": str(saved()["sae"]),
            "ks": [1, 4],
            "n_random": 2,
        },
        {"kind": "das", "name": "das_io", "hooks": HOOKS, "rank": 1, "epochs": 3},
        {"kind": "das", "name": "das_noising", "hooks": HOOKS[1:], "direction": "noising", "epochs": 3},
    ],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory, toy_model):
    out = tmp_path_factory.mktemp("representations")
    config = parse_config(CONFIG)
    results = experiment.run_experiment(config, out, progress=False)
    pairs = build_pairs(config.task, toy_model, config.seed)
    return out, {a["name"]: a for a in results["analyses"]}, pairs


def test_probe_kind_is_probe_layers_on_the_clean_prompts_labelled_by_answer(run, toy_model):
    """Independent path: the clean prompts as strings, each labelled by its answer's name."""
    _, entries, pairs = run
    strings = [
        toy_model.tokenizer.decode(pairs.clean_tokens[i, : int(pairs.lengths[i])]) for i in range(len(pairs))
    ]
    answers = [toy_model.tokenizer.decode([int(t)]) for t in pairs.answer]
    classes = sorted(set(answers))
    labels = [classes.index(a) for a in answers]
    direct = probe_layers(
        toy_model, strings, labels, HOOKS, seed=CONFIG["seed"], groups=list(range(len(pairs)))
    )
    entry = entries["io"]
    assert entry["classes"] == classes and entry["labels"]["hook"] == HOOKS
    got = torch.tensor(entry["values"])
    assert torch.equal(got[:, 0], direct.accuracy.float()) and torch.equal(
        got[:, 1], direct.shuffled_accuracy.float()
    )
    assert entry["chance"] == pytest.approx(direct.chance) and entry["n_test"] == direct.n_test
    assert got[1, 0] >= 0.9 and got[1, 1] <= 0.5  # the toy's IO is readable after its name mover (its card)


def test_clean_or_corrupted_keeps_each_pair_on_one_side_of_the_split(run, toy_model):
    _, entries, pairs = run
    data = from_pairs(pairs, toy_model.tokenizer, "clean_or_corrupted")
    assert data.classes == ("corrupted", "clean") and data.labels.tolist() == [1] * len(pairs) + [0] * len(
        pairs
    )
    assert torch.equal(data.groups, torch.arange(len(pairs)).repeat(2))
    direct = probe_layers(
        toy_model, data.prompts, data.labels, HOOKS[1:], seed=CONFIG["seed"], groups=data.groups
    )
    assert entries["which"]["values"][0][0] == pytest.approx(direct.accuracy[0].item())
    assert entries["which"]["n_test"] % 2 == 0  # whole pairs held out


def test_sparse_probe_kind_reads_the_most_frequent_answer_against_the_rest(run, toy_model):
    _, entries, pairs = run
    data = from_pairs(pairs, toy_model.tokenizer, "answer")
    counts = data.labels.bincount(minlength=len(data.classes))
    positive = max(range(len(data.classes)), key=lambda c: (int(counts[c]), c))
    direct = sparse_probe(
        toy_model, data.prompts, data.labels, "blocks.3.mlp.hook_post", [1, 4], positive=positive,
        n_random=2, seed=CONFIG["seed"], groups=data.groups,
    )  # fmt: skip
    entry = entries["neurons"]
    assert entry["positive_class"] == data.classes[positive] and entry["units"] == direct.ranking[:4].tolist()
    assert [row[0] for row in entry["values"]] == pytest.approx(direct.accuracy.tolist())


def test_sparse_probe_kind_on_a_dictionary_reads_its_spliced_latents(run, toy_model):
    from interp.dictionaries import load_dictionary
    from interp.dictionaries.splice import splice

    _, entries, pairs = run
    data = from_pairs(pairs, toy_model.tokenizer, "answer")
    positive = data.classes.index(entries["latents"]["positive_class"])
    sae = load_dictionary(saved()["sae"])
    with splice(toy_model, [sae], error=True) as spliced:
        hook = spliced.name(sae, "hook_acts")
        direct = sparse_probe(
            toy_model, data.prompts, data.labels, hook, [1, 4], positive=positive, n_random=2,
            seed=CONFIG["seed"], groups=data.groups,
        )  # fmt: skip
    entry = entries["latents"]
    assert entry["hook"] == hook == f"{sae.cfg.hook_name}.dict.hook_acts"
    assert entry["units"] == direct.ranking[:4].tolist() and max(entry["units"]) < sae.d_sae
    assert [row[1] for row in entry["values"]] == pytest.approx(direct.roc_auc.tolist())


@pytest.mark.parametrize("name, direction", [("das_io", "denoising"), ("das_noising", "noising")])
def test_das_kind_is_fit_das_on_the_pairs_of_one_length(run, toy_model, name, direction):
    """Denoising: base = corrupted, source = clean, expecting the clean answer; noising the reverse."""
    _, entries, pairs = run
    entry = entries[name]
    length = int(pairs.lengths.mode().values)
    rows = (pairs.lengths == length).nonzero().flatten()
    clean, corrupted = pairs.clean_tokens[rows, :length], pairs.corrupted_tokens[rows, :length]
    candidates = sorted(set(pairs.answer[rows].tolist()) | set(pairs.wrong[rows].tolist()))
    expected = (pairs.answer if direction == "denoising" else pairs.wrong)[rows]
    base, source = (corrupted, clean) if direction == "denoising" else (clean, corrupted)
    targets = [candidates.index(int(t)) for t in expected]
    hook = entry["labels"]["hook"][-1]
    direct = fit_das(
        toy_model, base, source, candidates, targets, hook, rank=1, epochs=3, seed=CONFIG["seed"]
    )
    assert entry["n_pairs_used"] == len(rows) < len(pairs) and entry["n_tokens"] == length
    assert entry["values"][-1] == pytest.approx(
        [direct.accuracy.item(), direct.mean_difference_accuracy.item(), direct.random_accuracy.item()]
    )
    loaded = load_subspace(run[0], name, hook)
    assert torch.allclose(loaded.basis, direct.basis, atol=1e-6)
    assert loaded.accuracy.item() == pytest.approx(direct.accuracy.item())


def test_a_loaded_subspace_steers_as_the_fitted_one(run, toy_model):
    out, entries, pairs = run
    data = das_pairs(pairs, "denoising")
    direct = fit_das(
        toy_model, data["base"], data["source"], data["answers"].tolist(), data["targets"], HOOKS[1], rank=1,
        epochs=3, seed=CONFIG["seed"],
    )  # fmt: skip
    loaded = load_subspace(out, "das_io", HOOKS[1])
    present = [c for c in range(len(direct.class_means)) if not direct.class_means[c].isnan().any()]
    want = das_steer(direct, present[0], present[1], positions=[data["n_tokens"] - 1])
    got = das_steer(loaded, present[0], present[1], positions=[data["n_tokens"] - 1])
    assert got.layer == want.layer == 4 and torch.allclose(got.vector, want.vector, atol=1e-5)
    best = load_subspace(out, "das_io")  # no hook: the best one
    assert best.hook == HOOKS[int(torch.tensor(entries["das_io"]["values"])[:, 0].argmax())]


def test_load_subspace_names_what_is_missing(run, tmp_path):
    out = run[0]
    with pytest.raises(
        InputError, match=r"no das analysis named 'io'; its das analyses: \['das_io', 'das_noising'\]"
    ):
        load_subspace(out, "io")
    with pytest.raises(InputError, match=r"searched no hook 'blocks.0.hook_resid_pre'"):
        load_subspace(out, "das_io", "blocks.0.hook_resid_pre")
    with pytest.raises(InputError, match="has no results.json"):
        load_subspace(tmp_path, "das_io")


def test_the_report_draws_accuracy_by_hook_with_its_controls(run):
    from interp.report.run_report import build_report

    out, entries, _ = run
    results = json.loads((out / "results.json").read_text())
    sections = {s.title: s for s in build_report(results).sections}
    probe = sections["io (probe)"]
    figure = probe.figures[0]
    assert [t.name for t in figure.data] == ["accuracy", "shuffled_accuracy", "train_accuracy"]
    assert list(figure.data[0].y) == pytest.approx([row[0] for row in entries["io"]["values"]])
    assert (
        "readable from blocks.3.hook_resid_post" in probe.finding or "readable from blocks.1" in probe.finding
    )
    assert probe.table_rows[1][0] == HOOKS[1] and len(probe.table_header) == 4
    das = sections["das_io (das)"]
    assert f"{entries['das_io']['n_pairs_used']} of 64 pairs" in das.finding
    assert "interp.load_subspace" in das.explanation
    assert "units" in sections["neurons (sparse_probe)"].finding
    assert (out / "report.html").read_text().count("plotly-figure") >= 5


class TestLabelsFile:
    def test_jsonl_and_csv_give_the_same_prompts_and_sorted_classes(self, tmp_path):
        rows = [("a b", "10"), ("c d", "9"), ("e f", "10")]
        jsonl = tmp_path / "labels.jsonl"
        jsonl.write_text("".join(json.dumps({"prompt": p, "label": int(label)}) + "\n" for p, label in rows))
        csv = tmp_path / "labels.csv"
        csv.write_text("label,prompt\n" + "".join(f'{label},"{p}"\n' for p, label in rows))
        for path in (jsonl, csv):
            data = read_labels_file(path)
            assert data.prompts == ["a b", "c d", "e f"]
            assert data.classes == ("9", "10") and data.labels.tolist() == [1, 0, 1]  # numeric order

    @pytest.mark.parametrize(
        "content, message",
        [
            ('{"prompt": "a", "label": "x"}\n{"prompt": "b"}\n', r"labels\.jsonl line 2: missing label"),
            (
                '{"prompt": "a", "label": true}\n',
                r"line 1: label must be a non-empty string or an integer, not True",
            ),
            ('{"prompt": "a", "label": "x", "extra": 1}\n', r"line 1: unknown field 'extra'"),
            (
                '{"prompt": "a", "label": "x"}\n{"prompt": "b", "label": "x"}\n',
                r"every prompt has the label 'x'",
            ),
            ("", r"holds no labelled prompts"),
        ],
    )
    def test_a_bad_file_is_refused_naming_its_line(self, tmp_path, content, message):
        path = tmp_path / "labels.jsonl"
        path.write_text(content)
        with pytest.raises(LabelsFileError, match=message):
            read_labels_file(path)

    def test_a_config_reads_the_file_relative_to_itself(self, tmp_path):
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "labels.jsonl").write_text('{"prompt": "a", "label": "x"}\n')
        config = tmp_path / "sub" / "run.toml"
        config.write_text('[[analysis]]\nkind = "probe"\nlabels_file = "labels.jsonl"\n')
        assert load_config(config).analysis[0].labels_file == str(tmp_path / "sub" / "labels.jsonl")
        config.write_text('[[analysis]]\nkind = "probe"\nlabels_file = "missing.jsonl"\n')
        with pytest.raises(ConfigError, match=r"labels_file '.*missing.jsonl' is not a file"):
            load_config(config)


@pytest.mark.parametrize(
    "table, message",
    [
        (
            {"kind": "probe", "labels": "answer", "labels_file": __file__},
            r"probe does not read labels = 'answer'",
        ),
        ({"kind": "probe", "labels": "names"}, r"labels: Input should be 'answer' or 'clean_or_corrupted'"),
        ({"kind": "das", "epochs": 0}, r"epochs = 0 trains nothing"),
        ({"kind": "das", "direction": "sideways"}, r"direction: Input should be 'denoising' or 'noising'"),
        ({"kind": "sparse_probe", "ks": [4, 2]}, r"ks = \[4, 2\]: use strictly increasing sizes from 1"),
        ({"kind": "sparse_probe", "n_random": 0}, r"n_random: Input should be greater than or equal to 1"),
        ({"kind": "probe", "test_fraction": 1.0}, r"test_fraction: Input should be less than 1"),
    ],
)
def test_bad_options_are_refused_by_name(table, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"analysis": [table]})


def test_what_only_the_model_can_tell_is_checked_before_any_unit(toy_model):
    from interp.runner.kinds import spec_for

    def check(table):
        spec_for(table["kind"]).check(parse_config({"analysis": [table]}).analysis[0], toy_model)

    with pytest.raises(InputError, match=r"blocks\.3\.hook_resid_psot"):
        check({"kind": "probe", "hooks": ["blocks.3.hook_resid_psot"]})
    with pytest.raises(InputError, match=r"rank = 160 is not allowed; use 1 .. 159"):
        check({"kind": "das", "rank": 160})
    with pytest.raises(
        InputError,
        match=r"positive_class = 'dirty' is not a class of the labels; use one of \['corrupted', 'clean'\]",
    ):
        check({"kind": "sparse_probe", "labels": "clean_or_corrupted", "positive_class": "dirty"})


def test_das_refuses_too_few_pairs_of_one_length_saying_which_it_read(toy_model):
    from interp.runner.kinds import spec_for
    from interp.runner.registry import UnitContext

    config = parse_config(
        {"task": {"name": "ioi", "n_pairs": 6}, "analysis": [{"kind": "das", "hooks": HOOKS[:1]}]}
    )
    pairs = build_pairs(config.task, toy_model, 0)
    with pytest.raises(InputError, match=r"das reads the \d+ of 6 pairs with \d+ tokens"):
        spec_for("das").compute(config.analysis[0], toy_model, pairs, UnitContext("logit_diff", 0, 2**30))


def test_the_example_config_parses():
    config = load_config(Path(__file__).resolve().parents[1] / "experiments" / "ioi_representations.toml")
    assert {a.kind for a in config.analysis} == {"probe", "das", "sparse_probe"}


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)")
def test_the_report_draws_in_chromium_offline(run):
    """Every figure of the run's report draws with the network cut off, and each accuracy chart shows
    its lines (the method and its controls) with the values results.json holds."""
    from playwright.sync_api import sync_playwright

    out, entries, _ = run
    with sync_playwright() as p:
        browser, page, errors, external = open_offline_page(p, out / "report.html", height=1200)
        try:
            page.wait_for_function(
                "() => [...document.querySelectorAll('.plotly-figure')].every(f => f.querySelector('.main-svg'))",
                timeout=120_000,
            )
            charts = page.evaluate(
                """() => [...document.querySelectorAll('.plotly-figure')]
                    .filter(f => (f.layout?.title?.text || '').endsWith('held-out accuracy'))
                    .map(f => ({title: f.layout.title.text, names: f.data.map(t => t.name), y: f.data[0].y,
                                lines: f.querySelectorAll('.scatterlayer .trace').length}))"""
            )
        finally:
            browser.close()
    assert errors == [] and external == []
    by_title = {c["title"].split(":")[0]: c for c in charts}
    assert set(by_title) == set(entries)
    assert (
        by_title["das_io"]["names"] == ["das", "mean_difference", "random"]
        and by_title["das_io"]["lines"] == 3
    )
    assert by_title["io"]["y"] == pytest.approx([row[0] for row in entries["io"]["values"]])
