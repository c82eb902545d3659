"""Every python block of README.md and notebooks/README.md runs as written, on the toy model.

Blocks of one file run in order in one namespace, so a block that continues the previous one (uses its
`model`, `pairs`, ...) finds them. The only change made to a block: a `load_model(...)` that names a hub
model or a local path loads `"toy"` instead (no download, no directory that exists elsewhere only).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "notebooks" / "README.md"]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
HUB_OR_PATH = re.compile(r"""load_model\((["'])(?!toy\1)[^"']+\1""")

# blocks known to fail, each with its reason: (file, first line of the block) -> (why, the error expected)
EXPECTED_TO_FAIL: dict[tuple[str, str], tuple[str, type[BaseException]]] = {}


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """(line number, source) of each ```python fenced block, in order."""
    text = path.read_text()
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in FENCE.finditer(text)]


def on_the_toy(source: str) -> str:
    return HUB_OR_PATH.sub('load_model("toy"', source)


def test_substitution_touches_only_hub_models_and_paths():
    source = 'a = load_model("toy")\nb = load_model("microsoft/phi-2")\nc = load_model("/data/phi-2", weights="folded")'
    assert (
        on_the_toy(source)
        == 'a = load_model("toy")\nb = load_model("toy")\nc = load_model("toy", weights="folded")'
    )


def test_the_readmes_have_python_blocks():
    assert len(python_blocks(DOCS[0])) >= 4  # a broken fence pattern would make every test below vacuous


CASES = [
    pytest.param(
        doc,
        index,
        line,
        marks=[
            pytest.mark.xfail(reason=EXPECTED_TO_FAIL[key][0], raises=EXPECTED_TO_FAIL[key][1], strict=True)
        ]
        if (key := (doc.name, source.splitlines()[0])) in EXPECTED_TO_FAIL
        else [],
        id=f"{doc.relative_to(ROOT)}:{line}",
    )
    for doc in DOCS
    for index, (line, source) in enumerate(python_blocks(doc))
]


@pytest.fixture(scope="module")
def namespaces():
    """Per document: the namespace its blocks share and, for each block run so far, its error (or None)."""
    return {}


def _run_document(doc: Path, upto: int, namespaces: dict, workdir: Path) -> None:
    """Run the blocks of `doc` up to index `upto` that have not run yet, in order, in one namespace."""
    state = namespaces.setdefault(doc, {"globals": {"__name__": "__readme__"}, "done": {}})
    for index, (line, source) in enumerate(python_blocks(doc)[: upto + 1]):
        if index in state["done"]:
            continue
        cwd = os.getcwd()
        os.chdir(workdir)  # blocks that write files (save_circuit) write them here
        try:
            exec(compile(on_the_toy(source), f"{doc.name}:{line}", "exec"), state["globals"])
            state["done"][index] = None
        except Exception as error:  # kept for this block's test; later blocks still run
            state["done"][index] = error
        finally:
            os.chdir(cwd)


@pytest.mark.parametrize(("doc", "index", "line"), CASES)
def test_block_runs_as_written(doc, index, line, namespaces, tmp_path):
    _run_document(doc, index, namespaces, tmp_path)
    error = namespaces[doc]["done"][index]
    if error is not None:
        raise error


class TestComingFromTransformerLens:
    """The claims of README's "Coming from TransformerLens" table that are not shown by its code block
    (the key/value cache, the config fields and DLA's axis order are tested in test_loading.py and
    test_direct_logit_attribution.py)."""

    @pytest.mark.parametrize("name", ["HookedTransformer", "utils", "HookedTransformerConfig"])
    def test_tl3_names_are_gone(self, name):
        with pytest.raises(ImportError):
            exec(f"from transformer_lens import {name}", {})

    def test_utilities_has_the_utils_names(self):
        from transformer_lens import utilities

        for name in ("get_act_name", "to_numpy", "test_prompt"):
            assert callable(getattr(utilities, name)), name
        assert utilities.get_act_name("z", 3) == "blocks.3.attn.hook_z"

    def test_patching_module_is_still_there(self):
        from transformer_lens import patching

        assert callable(patching.get_act_patch_attn_head_out_all_pos)

    def test_the_bridge_and_its_cache_helpers(self, toy_model):
        from transformer_lens.model_bridge import TransformerBridge
        from transformer_lens.utilities import get_act_name

        assert isinstance(toy_model, TransformerBridge)
        _, cache = toy_model.run_with_cache("When Mary and John went to the store, John gave a drink to")
        assert cache["z", 3] is cache[get_act_name("z", 3)]
        L = toy_model.cfg.n_layers
        assert cache.accumulated_resid().shape[0] == L + 1
        assert cache.decompose_resid().shape[0] == 1 + 2 * L
        assert cache.stack_head_results().shape[0] == L * toy_model.cfg.n_heads

    def test_no_resid_mid_or_ln2_and_resid_mid_is_refused(self, toy_model):
        from transformer_lens.utilities import get_act_name

        from interp import HookNameError, validate_hook_names

        assert toy_model.cfg.parallel_attn_mlp is True
        assert not [name for name in toy_model.hook_dict if "resid_mid" in name or ".ln2." in name]
        with pytest.raises(HookNameError, match="resid_mid"):
            validate_hook_names(toy_model, [get_act_name("resid_mid", 1)])

    def test_float16_is_refused_and_bfloat16_loads(self):
        import torch

        from interp import UnsafeDtypeError, load_model

        with pytest.raises(UnsafeDtypeError):
            load_model("toy", dtype=torch.float16)
        assert load_model("toy", dtype="bfloat16").interp_info.dtype == "bfloat16"
        with pytest.raises(UnsafeDtypeError):
            load_model("toy").half()

    def test_attn_result_at_load_equals_set_use_attn_result(self):
        from interp import load_model

        text = "When Mary and John went to the store, John gave a drink to"
        at_load = load_model("toy", attn_result=True)
        later = load_model("toy")
        later.set_use_attn_result(True)
        name = "blocks.3.attn.hook_result"
        assert name in at_load.hook_dict
        assert (
            at_load.run_with_cache(text)[1][name] - later.run_with_cache(text)[1][name]
        ).abs().max() <= 1e-5

    def test_prepend_bos_adds_one(self, toy_model):
        text = "When Mary"
        plain = toy_model.to_tokens(text)[0].tolist()
        assert (
            toy_model.to_tokens(text, prepend_bos=True)[0].tolist()
            == [toy_model.tokenizer.bos_token_id] + plain
        )
        assert toy_model.tokenizer(text)["input_ids"] == plain
