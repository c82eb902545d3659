"""The analysis kinds (interp.runner.kinds): every option a kind declares reaches its compute, options
its other values make it ignore are refused by name, and the light copies of the methods' switches
are the methods' own."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import pkgutil
import sys
import typing

import pytest
import torch
from dictionaries.cards_files import feature_cards_files
from dictionary_files import saved
from helpers import ioi_pairs

import interp.dictionaries
import interp.methods
from interp.base.errors import InputError
from interp.runner.config import ConfigError, parse_config
from interp.runner.kinds import REGISTRY, spec_for
from interp.runner.registry import UnitContext

CTX = UnitContext(metric="logit_diff", seed=0, memory_budget=2**30)


@pytest.fixture(scope="module")
def pairs(toy_model):
    return ioi_pairs(toy_model.tokenizer, 2, seed=1)


# kinds that hold prompts out (probes, DAS) need more than two pairs to split
HELD_OUT_KINDS = ("probe", "sparse_probe", "das")


@pytest.fixture(scope="module")
def more_pairs(toy_model):
    return ioi_pairs(toy_model.tokenizer, 8, seed=1)


@functools.lru_cache(maxsize=2)
def labels_file(seed: int) -> str:
    """A .jsonl of 8 toy prompts labelled 'a' or 'b' (seeded), written once per seed."""
    import atexit
    import json
    import random
    import tempfile
    from pathlib import Path

    rng = random.Random(seed)
    names = ["Mary", "John", "Tom", "James"]
    rows = [
        {"prompt": f"When {rng.choice(names)} and {rng.choice(names)} went to the store, {rng.choice(names)} gave a", "label": "ab"[i % 2]}
        for i in range(8)
    ]  # fmt: skip
    path = Path(tempfile.mkdtemp(prefix="labels-")) / "labels.jsonl"
    atexit.register(path.unlink, missing_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def analysis(kind: str, **options):
    return parse_config({"analysis": [{"kind": kind, **options}]}).analysis[0]


def prompts(model, pairs, which: str) -> list[str]:
    tokens = getattr(pairs, f"{which}_tokens")
    return [model.tokenizer.decode(tokens[i, : int(pairs.lengths[i])]) for i in range(len(pairs))]


@functools.lru_cache(maxsize=2)
def toy_transcoders(seed: int) -> list[str]:
    """Directories of random transcoders for the toy (one per layer), written once per seed."""
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    from methods.graphs.models import random_transcoders

    from interp.dictionaries import save_dictionary

    root = Path(tempfile.mkdtemp(prefix="toy-transcoders-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    for layer, tc in enumerate(random_transcoders(4, 160, 16, "topk", k=4, seed=seed)):
        save_dictionary(tc, root / f"layer{layer}")
    return [str(root / f"layer{layer}") for layer in range(4)]


# options a kind cannot do without (for tests that only parse configs)
REQUIRED = {"attribution_graph": {"transcoders": ["layer0", "layer1", "layer2", "layer3"]}}


def corpus_bases(options: dict) -> list[dict]:
    """A reader of a corpus: one base reading files (a .txt and a .jsonl), one a registered corpus."""
    files = [str(saved()["corpus_jsonl"]), str(saved()["corpus"])]  # 3 short rows, then 24
    small = {"context_length": 8, "max_tokens": 160}
    return [{**options, **small, "files": files}, {**options, **small, "corpus": "toy"}]


def bases(model, pairs) -> dict[str, dict | list[dict]]:
    """Per kind, options under which every option it declares is read (and computes stay small)."""
    clean, corrupted = prompts(model, pairs, "clean"), prompts(model, pairs, "corrupted")
    return {
        "attribution_graph": {"transcoders": toy_transcoders(0), "check_top": 1},
        "path_patch": {"receivers": [[3, 0]]},
        "steer": {
            "layers": [2],
            "multipliers": [4.0],
            "n_samples": 1,
            "max_new_tokens": 3,
            "positive": clean[:1],
            "negative": corrupted[:1],
        },
        "generate": {"heads": [[3, 2]], "n_samples": 1, "max_new_tokens": 3},
        "dictionary_eval": corpus_bases({"dictionaries": [str(saved()["sae"])]}),
        "feature_attribution": {"dictionaries": [str(saved()["sae"])]},
        "feature_circuit": {"dictionaries": [str(saved()["sae"])], "top_k": 2, "sizes": [2]},
        "feature_cards": corpus_bases({"dictionaries": [feature_cards_files()["sae_a"]], "n_contexts": 2}),
        "probe": [
            {"hooks": ["blocks.3.hook_resid_post"], "labels": "clean_or_corrupted", "max_iter": 5},
            {"hooks": ["blocks.3.hook_resid_post"], "labels_file": labels_file(0), "max_iter": 5},
        ],
        "sparse_probe": [
            {
                "labels": "clean_or_corrupted",
                "ks": [1, 2],
                "n_random": 1,
                "max_iter": 20,
            },
            {
                "labels_file": labels_file(0),
                "ks": [1, 2],
                "n_random": 1,
                "max_iter": 20,
            },
        ],
        "das": {"hooks": ["blocks.3.hook_resid_post"], "epochs": 1, "test_fraction": 0.25},
    }


def alternatives(model, pairs) -> dict[str, object]:
    """A second valid value for each option that is not a Literal switch."""
    clean, corrupted = prompts(model, pairs, "clean"), prompts(model, pairs, "corrupted")
    return {
        "steps": 2,
        "senders": [[0, 1]],
        "receivers": [[2, 1]],
        "layers": [1],
        "multipliers": [-4.0],
        "heads": [[2, 3]],
        "n_samples": 2,
        "max_new_tokens": 5,
        "positive": clean[1:],
        "negative": corrupted[1:],
        "dictionaries": [str(saved()["sae_b"]), str(saved()["transcoder"])],
        "files": [str(saved()["corpus_b"])],
        "corpus": "test-sentences",
        "seed": 1,
        "text_field": "body",
        "pack": False,
        "max_tokens": 64,
        "model_batch": 1,
        "dense_threshold": 0.5,
        "bins": 7,
        "error": False,
        "features": [1, 2],
        "top_n": 2,
        "n_contexts": 3,
        "n_tokens": 4,
        "context_length": 5,
        "transcoders": toy_transcoders(1),
        "prompt": clean[1],
        "pair": 1,
        "max_logits": 3,
        "logit_probability": 0.5,
        "node_threshold": 0.5,
        "edge_threshold": 0.9,
        "batch_size": 7,
        "check_top": 2,
        "max_feature_nodes": 20,
        "top_k": 1,
        "sizes": [1],
        "hooks": ["blocks.1.hook_resid_pre"],
        "hook": "blocks.2.mlp.hook_post",
        "position": -2,
        "test_fraction": 0.5,
        "labels_file": labels_file(1),
        "l2": 0.5,
        "max_iter": 3,
        "ks": [1, 3],
        "positive_class": "corrupted",
        "n_random": 2,
        "n_shuffles": 2,
        "standardize": False,
        "rank": 2,
        "epochs": 2,
        "lr": 0.1,
        "dictionary": str(saved()["sae"]),
        "head_layers": [0, 1],
    }


def _summary(value):
    """What a method was called with, comparable between calls: tensors by shape and contents."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.detach().float().cpu().numpy().tobytes())
    if isinstance(value, torch.nn.Module):
        return ("module", type(value).__name__)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__name__,
            {f.name: _summary(getattr(value, f.name)) for f in dataclasses.fields(value)},
        )
    if isinstance(value, dict):
        return {k: _summary(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_summary(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return type(value).__name__


@pytest.fixture
def method_calls(monkeypatch):
    """Calls from a kind's compute into any function of `interp.methods` or `interp.dictionaries`, with
    their arguments."""
    for package in (interp.methods, interp.dictionaries):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)
    calls: list = []

    def recording(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if sys._getframe(1).f_globals.get("__name__", "").startswith("interp.runner.kinds"):
                calls.append((fn.__module__, fn.__qualname__, _summary(args), _summary(kwargs)))
            return fn(*args, **kwargs)

        return wrapper

    for name, module in list(sys.modules.items()):
        if name.startswith(("interp.methods.", "interp.dictionaries.")) and module is not None:
            for attr, fn in list(vars(module).items()):
                if inspect.isfunction(fn) and fn.__module__ == name:
                    monkeypatch.setattr(module, attr, recording(fn))
    return calls


def _received(spec, options, model, pairs, calls: list) -> tuple:
    calls.clear()
    computed = spec.compute(options, model, pairs, CTX)
    outputs = (_summary(computed.values), computed.labels, _summary(computed.extra))
    return list(calls), outputs


def _literal_alternative(options, explicit: dict, name: str):
    annotation = type(options).model_fields[name].annotation
    for value in typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else ():
        if value != getattr(options, name):
            try:
                return analysis(options.kind, **{**explicit, name: value})
            except ConfigError:
                continue  # a value this kind refuses (e.g. steer's positions = "generated")
    return None


@pytest.mark.parametrize("kind", list(REGISTRY))
def test_every_option_a_kind_declares_reaches_its_compute(kind, toy_model, pairs, more_pairs, method_calls):
    """Varying any one option changes what the kind's compute passes to the methods (or, for an
    option applied to a method's result, what the compute returns). A kind whose options exclude each
    other (a corpus's `corpus` or `files`) has several bases: each option is varied on the first base
    that reads it, and every option must be read by one."""
    spec = spec_for(kind)
    pairs = more_pairs if kind in HELD_OUT_KINDS else pairs
    given = bases(toy_model, pairs).get(kind, {})
    base_list = given if isinstance(given, list) else [given]
    built = [analysis(kind, **options) for options in base_list]
    unread_everywhere = set.intersection(*(set(b.unread()) for b in built))
    assert not unread_everywhere, f"the test's base options for {kind} leave {unread_everywhere} unread"
    others = alternatives(toy_model, pairs)
    received_by_base = {}
    for name in spec.options.own_fields():
        i = next(i for i, b in enumerate(built) if name not in b.unread())
        base, base_options = built[i], base_list[i]
        if i not in received_by_base:
            received_by_base[i] = _received(spec, base, toy_model, pairs, method_calls)
            assert received_by_base[i][0], f"{kind}'s compute called no method"
        received = received_by_base[i]
        varied = _literal_alternative(base, base_options, name)
        if varied is None:
            assert name in others, f"give the test an alternative value for {kind}'s option {name!r}"
            varied = analysis(kind, **{**base_options, name: others[name]})
        assert getattr(varied, name) != getattr(base, name)
        changed = _received(spec, varied, toy_model, pairs, method_calls)
        differs = changed[0] != received[0] or changed[1] != received[1]
        assert differs, (
            f"{kind}: {name} = {getattr(varied, name)!r} instead of {getattr(base, name)!r} changed "
            "neither what the compute passed to the methods nor what it returned"
        )


def test_eap_ig_activations_variant_is_what_runs(toy_model, pairs):
    """Independent path: the method called directly with variant="activations" (the config ran the
    inputs variant whatever `variant` said)."""
    from interp.methods.circuits.edge_attribution import eap_ig

    computed = spec_for("eap_ig").compute(analysis("eap_ig", variant="activations"), toy_model, pairs, CTX)
    expected = eap_ig(toy_model, pairs, "logit_diff", variant="activations", reduce="none").values
    inputs = eap_ig(toy_model, pairs, "logit_diff", variant="inputs", reduce="none").values
    scale = expected.abs().max()
    assert (computed.values - expected).abs().max() <= 1e-5 * scale
    assert (inputs - expected).abs().max() > 1e-3 * scale  # the two variants differ on the toy


def test_eap_ig_rule_is_what_runs(toy_model, pairs):
    """A config's `rule = "left"` (the EAP-IG library's points) runs that rule, not the midpoints."""
    from interp.methods.circuits.edge_attribution import eap_ig

    computed = spec_for("eap_ig").compute(analysis("eap_ig", rule="left", steps=3), toy_model, pairs, CTX)
    expected = eap_ig(toy_model, pairs, "logit_diff", steps=3, rule="left", reduce="none").values
    midpoint = eap_ig(toy_model, pairs, "logit_diff", steps=3, reduce="none").values
    scale = expected.abs().max()
    assert (computed.values - expected).abs().max() <= 1e-5 * scale
    assert (midpoint - expected).abs().max() > 1e-3 * scale


class TestLightCopiesAreTheMethods:
    """The options models import no method; the switches they copy must stay the methods' own."""

    def test_literals(self):
        from interp.data.labelled_prompts import PairLabels
        from interp.data.metrics import MetricKind
        from interp.data.tasks import options as task_options
        from interp.methods.ablation import Method
        from interp.methods.circuits.circuit import Mode
        from interp.methods.circuits.edge_attribution import Rule
        from interp.methods.contrastive import Direction
        from interp.methods.head_scores import ScoreKind
        from interp.methods.interventions import Where
        from interp.runner import options
        from interp.runner.kinds import ablation, edges, head_scores, representations

        for copy, original in (
            (options.Direction, Direction),
            (options.Where, Where),
            (ablation.Method, Method),
            (edges.Mode, Mode),
            (edges.Rule, Rule),
            (head_scores.ScoreKind, ScoreKind),
            (task_options.MetricKind, MetricKind),
            (representations.PairLabels, PairLabels),
        ):
            assert typing.get_args(copy) == typing.get_args(original)

    def test_patch_sites(self):
        from interp.methods.activation_patching import SITE_DIMS
        from interp.runner.kinds import patching

        assert patching.SITE_DIMS == SITE_DIMS
        assert {k for k in REGISTRY if k.startswith("patch_")} == {f"patch_{s}" for s in SITE_DIMS}


@pytest.mark.parametrize(
    "table, expected",
    [
        (
            {"kind": "path_patch", "receivers": "logits", "receiver_input": "k"},
            r"path_patch does not read receiver_input = 'k': the receivers are the logits",
        ),
        (
            {"kind": "circuit_faithfulness", "edge_method": "eap", "steps": 3},
            r"circuit_faithfulness does not read steps = 3: edge_method = 'eap' does not integrate",
        ),
        (
            {"kind": "steer", "positions": "generated"},
            r"analysis.0.positions: .*'generated' is not allowed for steer: its values score the prompt's "
            r"last position",
        ),
        ({"kind": "steer", "layers": []}, r"analysis.0.layers: List should have at least 1 item"),
        ({"kind": "steer", "multipliers": [float("nan")]}, r"analysis.0.multipliers.0: .*finite number"),
        ({"kind": "steer", "multipliers": [float("inf")]}, r"analysis.0.multipliers.0: .*finite number"),
        ({"kind": "steer", "n_samples": 0, "max_new_tokens": 4}, r"steer does not read max_new_tokens = 4"),
        ({"kind": "generate", "n_samples": 0}, r"analysis.0.n_samples: .*greater than or equal to 1"),
        (
            {"kind": "generate", "head_source": "corrupted"},
            r"generate does not read head_source.*heads is empty",
        ),
        (
            {"kind": "generate", "heads": [[0, 0]], "head_source": "corrupted", "positions": "prompt"},
            r"generate does not read positions = 'prompt': head_source = 'corrupted' patches the prompt's",
        ),
        ({"kind": "ablate_head", "method": "zero", "reference": "shuffled"}, r"does not read reference"),
        ({"kind": "eap", "steps": 3}, r"eap does not read steps; its options are: direction"),
        ({"kind": "dla_head", "method": "zero"}, r"dla_head does not read method; its options are: none"),
    ],
)
def test_options_a_kind_would_ignore_are_refused_by_name(table, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_config({"analysis": [table]})


def test_an_unread_default_is_not_written_so_the_resolved_config_reads_back(tmp_path):
    from interp.runner.config import load_config, to_toml

    config = parse_config(
        {
            "analysis": [
                {"kind": "path_patch"},
                {"kind": "circuit_faithfulness", "edge_method": "eap"},
                {"kind": "generate"},
                {"kind": "ablate_head", "method": "zero"},
            ]
        }
    )
    text = to_toml(config)
    assert "receiver_input" not in text and "steps" not in text and "head_source" not in text
    assert "reference" not in text
    path = tmp_path / "resolved.toml"
    path.write_text(text, encoding="utf-8")
    assert load_config(path) == config


class TestPathPatchDefaults:
    def test_one_default_direction_in_python_and_config(self):
        python_default = inspect.signature(interp.methods.path_patching.path_patch).parameters["direction"]
        assert analysis("path_patch").direction == python_default.default == "noising"

    def test_the_config_runs_what_python_runs_by_default(self, toy_model, pairs):
        """Independent path: path_patch called with its own defaults."""
        from interp.methods.path_patching import path_patch

        computed = spec_for("path_patch").compute(analysis("path_patch"), toy_model, pairs, CTX)
        expected = path_patch(toy_model, pairs, reduce="none").values
        assert (computed.values - expected).abs().max() <= 1e-5 * expected.abs().max()

    def test_the_path_to_the_logits_is_not_labelled_with_a_receiver_input(self):
        finished = spec_for("path_patch").finish(analysis("path_patch"), torch.zeros(4, 4), 1.0, 0.0)
        assert "(q)" not in finished.description and "logits" in finished.description
        to_heads = spec_for("path_patch").finish(
            analysis("path_patch", receivers=[[3, 0]], receiver_input="k"), torch.zeros(4, 4), 1.0, 0.0
        )
        assert "k input of [[3, 0]]" in to_heads.description


def test_each_kind_is_registered_once_with_a_model_of_its_own_kind():
    for kind, spec in REGISTRY.items():
        assert kind in spec.options.kinds()
        for name in spec.options.own_fields():
            assert spec.options.model_fields[name].description, f"{kind}.{name} has no description"


def test_every_kind_round_trips_through_the_resolved_config(tmp_path):
    from interp.runner.config import load_config, to_toml

    files = {"dictionaries": [str(saved()["sae"])]}
    required = {
        "dictionary_eval": files,
        "feature_attribution": files,
        "feature_circuit": files,
        "feature_cards": files,
        **REQUIRED,
    }
    tables = [{"kind": kind, "name": f"a{i}", **required.get(kind, {})} for i, kind in enumerate(REGISTRY)]
    tables += [
        {"kind": "path_patch", "name": "to_heads", "receivers": [[3, 0]], "receiver_input": "v", "senders": [[1, 2]]},
        {"kind": "steer", "name": "prompts", "positive": ["🐱 \"a\"\\b"], "negative": ["x\ty"], "multipliers": [1e-7, -2.5]},
        {"kind": "generate", "name": "heads", "heads": [[0, 1]], "head_source": "corrupted"},
    ]  # fmt: skip
    config = parse_config({"analysis": tables})
    path = tmp_path / "resolved.toml"
    path.write_text(to_toml(config), encoding="utf-8")
    assert load_config(path) == config


def test_feature_cards_refuse_head_layers_they_would_not_read(toy_model):
    """head_layers is read for transcoders only: set on SAEs alone, or beyond the model, it is refused."""
    sae = feature_cards_files()["sae_a"]
    spec = spec_for("feature_cards")
    with pytest.raises(InputError, match="head_layers is read for transcoders' cards only"):
        spec.check(analysis("feature_cards", dictionaries=[sae], head_layers=[0]), toy_model)
    with pytest.raises(InputError, match=r"head_layers = \[4\] are not layers of this model \(0 .. 3\)"):
        spec.check(
            analysis("feature_cards", dictionaries=[sae, str(saved()["transcoder"])], head_layers=[4]),
            toy_model,
        )
    spec.check(
        analysis("feature_cards", dictionaries=[sae, str(saved()["transcoder"])], head_layers=[0, 1]),
        toy_model,
    )
