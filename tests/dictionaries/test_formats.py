"""SAELens's and eai-sparsify's layouts: files written as those tools write them load and encode as
their own code would (a reference written from it here), and what we write reads back identically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from interp.base.errors import InputError
from interp.dictionaries import load_dictionary, make_dictionary, save_dictionary
from interp.dictionaries.formats.sparsify import module_for_hooks

CASES = [
    ("relu", "sae", {}),
    ("relu", "transcoder", {}),
    ("relu", "skip_transcoder", {}),
    ("topk", "sae", {"k": 3}),
    ("topk", "skip_transcoder", {"k": 3}),
    ("jumprelu", "sae", {}),
    ("jumprelu", "transcoder", {}),
    ("batchtopk", "sae", {"k": 3}),
]


def random_dictionary(arch, kind, seed=0, **fields):
    hooks = {"hook_name": "blocks.1.ln1.hook_normalized", "hook_name_out": "blocks.1.hook_mlp_out"}
    if kind == "sae":
        hooks = {"hook_name": "blocks.2.hook_resid_pre"}
    d = make_dictionary(
        arch, d_in=10, d_sae=24, kind=kind, d_out=None if kind == "sae" else 6, **hooks, **fields
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in list(d.parameters()) + list(d.buffers()):
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
        if hasattr(d, "threshold"):
            d.threshold.copy_(torch.rand(d.d_sae, generator=generator) * 0.3)
    return d


# --- SAELens's inference, written from sae_lens/saes/*.py (6.x) and handle_pre_6_0_config -------------
def saelens_reference(directory: Path, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = json.loads((directory / "cfg.json").read_text())
    w = load_file(directory / "sae_weights.safetensors")
    arch = cfg.get("architecture", "standard")
    if cfg.get("activation_fn_str", cfg.get("activation_fn")) == "topk":
        arch, cfg["k"] = "topk", cfg["activation_fn_kwargs"]["k"]
    transcoder = "transcoder" in arch
    sae_in = x if transcoder else x - w["b_dec"] * cfg.get("apply_b_dec_to_input", True)
    pre = sae_in @ w["W_enc"] + w["b_enc"]
    if arch.startswith(
        "topk"
    ):  # topk_(skip_)transcoder: ours; SAELens has no class for it and refuses the name
        if cfg.get("rescale_acts_by_decoder_norm"):
            pre = pre * w["W_dec"].norm(dim=-1)
        top = pre.topk(cfg["k"], dim=-1, sorted=False)
        acts = torch.zeros_like(pre).scatter_(-1, top.indices, top.values.relu())
        decode_acts = acts / w["W_dec"].norm(dim=-1) if cfg.get("rescale_acts_by_decoder_norm") else acts
    elif arch.startswith("jumprelu"):
        acts = decode_acts = pre.relu() * (pre > w["threshold"]).to(pre.dtype)
    else:
        acts = decode_acts = pre.relu()
    out = decode_acts @ w["W_dec"] + w["b_dec"]
    if "skip" in arch:
        out = out + x @ w["W_skip"].T
    return acts, out


# --- sparsify's SparseCoder.encode / decode / forward (sparsify/sparse_coder.py, fused_encoder.py) -----
def sparsify_reference(directory: Path, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = json.loads((directory / "cfg.json").read_text())
    w = load_file(directory / "sae.safetensors")
    sae_in = x if cfg["transcode"] else x - w["b_dec"]
    pre = torch.nn.functional.relu(torch.nn.functional.linear(sae_in, w["encoder.weight"], w["encoder.bias"]))
    values, indices = pre.topk(cfg["k"], dim=-1, sorted=False)
    acts = torch.zeros_like(pre).scatter_(-1, indices, values)
    out = acts @ w["W_dec"] + w["b_dec"]
    if cfg["skip_connection"]:
        out = out + x @ w["W_skip"].mT
    return acts, out


class TestSAELensLayout:
    @pytest.mark.parametrize(("arch", "kind", "fields"), CASES)
    def test_saved_files_encode_as_saelens_would_and_load_back_identically(
        self, tmp_path, arch, kind, fields
    ):
        d = random_dictionary(arch, kind, **fields)
        x = torch.randn(30, 10)
        save_dictionary(d, tmp_path / "d", model_name="toy")
        acts, out = saelens_reference(tmp_path / "d", x)
        torch.testing.assert_close(acts, d.encode(x))
        torch.testing.assert_close(out, d(x))
        loaded = load_dictionary(tmp_path / "d")
        assert type(loaded) is type(d) and loaded.cfg == d.cfg
        for (name, a), (_, b) in zip(d.state_dict().items(), loaded.state_dict().items(), strict=True):
            assert torch.equal(a, b), name
        assert torch.equal(loaded.encode(x), d.encode(x)) and loaded.file_metadata["model_name"] == "toy"

    def test_the_cfg_is_saelens_6s_shape(self, tmp_path):
        save_dictionary(random_dictionary("topk", "sae", k=3), tmp_path / "d")
        cfg = json.loads((tmp_path / "d" / "cfg.json").read_text())
        assert cfg["architecture"] == "topk" and cfg["k"] == 3 and cfg["apply_b_dec_to_input"] is True
        assert cfg["metadata"]["hook_name"] == "blocks.2.hook_resid_pre" and "hook_name" not in cfg
        assert cfg["metadata"]["sae_lens_version"].startswith("6.")
        weights = load_file(tmp_path / "d" / "sae_weights.safetensors")
        assert weights["W_enc"].shape == (10, 24) and weights["W_dec"].shape == (24, 10)
        bt = json.loads(
            save_dictionary(random_dictionary("batchtopk", "sae", k=3), tmp_path / "b")
            .joinpath("cfg.json")
            .read_text()
        )
        assert bt["architecture"] == "jumprelu"  # what SAELens writes for a trained BatchTopK

    def test_a_file_as_saelens_6_writes_it(self, tmp_path):
        """cfg from SAEConfig.to_dict() of a JumpReLU transcoder (SAELens 6.x), weights by name."""
        generator = torch.Generator().manual_seed(1)
        w = {
            "W_enc": torch.randn(10, 24, generator=generator), "b_enc": torch.randn(24, generator=generator),
            "W_dec": torch.randn(24, 6, generator=generator), "b_dec": torch.randn(6, generator=generator),
            "threshold": torch.rand(24, generator=generator), "W_skip": torch.randn(6, 10, generator=generator),
        }  # fmt: skip
        directory = tmp_path / "tc"
        directory.mkdir()
        save_file(w, directory / "sae_weights.safetensors")
        cfg = {
            "d_in": 10, "d_sae": 24, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": False,
            "normalize_activations": "none", "reshape_activations": "none", "d_out": 6,
            "metadata": {
                "sae_lens_version": "6.54.12", "sae_lens_training_version": "6.54.12", "model_name": "phi-2",
                "hook_name": "blocks.1.ln1.hook_normalized", "hook_name_out": "blocks.1.hook_mlp_out",
                "hook_head_index": None, "context_size": 128, "prepend_bos": False, "seqpos_slice": [None],
                "model_from_pretrained_kwargs": {}, "dataset_path": "some/dataset",
            },
            "architecture": "jumprelu_skip_transcoder",
        }  # fmt: skip
        (directory / "cfg.json").write_text(json.dumps(cfg))
        save_file({"sparsity": torch.full((24,), -2.0)}, directory / "sparsity.safetensors")
        d = load_dictionary(directory)
        assert (d.architecture, d.kind, d.hook_name, d.hook_name_out) == (
            "jumprelu", "skip_transcoder", "blocks.1.ln1.hook_normalized", "blocks.1.hook_mlp_out",
        )  # fmt: skip
        x = torch.randn(20, 10)
        acts, out = saelens_reference(directory, x)
        torch.testing.assert_close(d.encode(x), acts, rtol=0, atol=0)
        torch.testing.assert_close(d(x), out)
        assert (
            torch.equal(d.log_density, torch.full((24,), -2.0))
            and d.file_metadata["dataset_path"] == "some/dataset"
        )

    def test_an_old_cfg_with_top_level_hook_point_and_topk_activation_fn(self, tmp_path):
        """A pre-6 cfg: the whole runner config at the top level, TopK as activation_fn_kwargs."""
        generator = torch.Generator().manual_seed(2)
        directory = tmp_path / "old"
        directory.mkdir()
        w = {"W_enc": torch.randn(10, 24, generator=generator), "b_enc": torch.randn(24, generator=generator),
             "W_dec": torch.randn(24, 10, generator=generator), "b_dec": torch.randn(10, generator=generator)}  # fmt: skip
        save_file(w, directory / "sae_weights.safetensors")
        cfg = {
            "model_name": "gpt2-small", "hook_point": "blocks.3.hook_resid_pre", "hook_point_layer": 3,
            "hook_point_head_index": None, "d_in": 10, "d_sae": 24, "activation_fn_str": "topk",
            "activation_fn_kwargs": {"k": 4}, "apply_b_dec_to_input": True, "normalize_activations": "none",
            "lr": 0.0004, "l1_coefficient": 5, "train_batch_size_tokens": 4096, "context_size": 128,
            "dataset_path": "Skylion007/openwebtext", "b_dec_init_method": "geometric_median",
            "expansion_factor": 32, "sae_lens_training_version": "3.5.0", "dtype": "float32", "device": "cuda",
            "log_to_wandb": True, "wandb_project": "x", "use_ghost_grads": False, "seed": 42,
        }  # fmt: skip
        (directory / "cfg.json").write_text(json.dumps(cfg))
        d = load_dictionary(directory)
        assert (d.architecture, d.cfg.k, d.hook_name) == ("topk", 4, "blocks.3.hook_resid_pre")
        x = torch.randn(20, 10)
        acts, out = saelens_reference(directory, x)
        torch.testing.assert_close(d.encode(x), acts, rtol=0, atol=0)
        torch.testing.assert_close(d(x), out)

    def test_rescale_acts_by_decoder_norm_is_honoured(self, tmp_path):
        d = random_dictionary("topk", "sae", k=3, rescale_acts_by_decoder_norm=True)
        save_dictionary(d, tmp_path / "d")
        cfg = json.loads((tmp_path / "d" / "cfg.json").read_text())
        del cfg["metadata"]["interp"]  # read it as a plain SAELens file
        (tmp_path / "d" / "cfg.json").write_text(json.dumps(cfg))
        x = torch.randn(20, 10)
        loaded = load_dictionary(tmp_path / "d")
        assert loaded.cfg.rescale_acts_by_decoder_norm
        acts, out = saelens_reference(tmp_path / "d", x)
        torch.testing.assert_close(loaded.encode(x), acts)
        torch.testing.assert_close(loaded(x), out)

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            (
                {"normalize_activations": "expected_average_only_in"},
                "normalize_activations='expected_average_only_in'",
            ),
            ({"normalize_activations": "layer_norm"}, "normalize_activations='layer_norm'"),
            ({"reshape_activations": "hook_z"}, "reshape_activations='hook_z'"),
            ({"finetuning_scaling_factor": True}, "finetuning_scaling_factor"),
            ({"architecture": "gated"}, "architecture 'gated' is not supported"),
            ({"frobnicate": 3}, "does not know: frobnicate"),
            (
                {"apply_b_dec_to_input": True, "architecture": "transcoder", "d_out": 10},
                "apply_b_dec_to_input=True is refused",
            ),
        ],
    )
    def test_fields_that_change_the_computation_are_honoured_or_refused_by_name(
        self, tmp_path, change, message
    ):
        save_dictionary(random_dictionary("relu", "sae"), tmp_path / "d")
        cfg = json.loads((tmp_path / "d" / "cfg.json").read_text())
        del cfg["metadata"]["interp"]
        cfg.update(change)
        (tmp_path / "d" / "cfg.json").write_text(json.dumps(cfg))
        with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_dictionary(tmp_path / "d")

    def test_saelens_fields_edited_after_we_wrote_the_file_are_not_silently_overruled(self, tmp_path):
        save_dictionary(random_dictionary("topk", "sae", k=3), tmp_path / "d")
        cfg = json.loads((tmp_path / "d" / "cfg.json").read_text())
        cfg["k"] = 5
        (tmp_path / "d" / "cfg.json").write_text(json.dumps(cfg))
        with pytest.raises(InputError, match="disagree.*k: 5 vs 3"):
            load_dictionary(tmp_path / "d")
        del cfg["metadata"]["interp"]
        (tmp_path / "d" / "cfg.json").write_text(json.dumps(cfg))
        assert load_dictionary(tmp_path / "d").cfg.k == 5

    def test_an_unknown_field_can_be_accepted_knowingly(self, tmp_path):
        save_dictionary(random_dictionary("relu", "sae"), tmp_path / "d")
        cfg = json.loads((tmp_path / "d" / "cfg.json").read_text())
        cfg["frobnicate"] = 3
        (tmp_path / "d" / "cfg.json").write_text(json.dumps(cfg))
        assert load_dictionary(tmp_path / "d", ignore_fields=("frobnicate",)).file_metadata["frobnicate"] == 3

    def test_bad_weights_and_paths_are_refused(self, tmp_path):
        save_dictionary(random_dictionary("jumprelu", "sae"), tmp_path / "d")
        weights = load_file(tmp_path / "d" / "sae_weights.safetensors")
        del weights["threshold"]
        save_file(weights, tmp_path / "d" / "sae_weights.safetensors")
        with pytest.raises(InputError, match="missing threshold"):
            load_dictionary(tmp_path / "d")
        with pytest.raises(InputError, match="not a directory"):
            load_dictionary(tmp_path / "nothing")
        with pytest.raises(InputError, match="trained on hook_name='blocks.2.hook_resid_pre'"):
            save_dictionary(random_dictionary("relu", "sae"), tmp_path / "e")
            load_dictionary(tmp_path / "e", hook_name="blocks.0.hook_resid_pre")
        (tmp_path / "real").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "real")
        with pytest.raises(InputError, match="symbolic link"):
            save_dictionary(random_dictionary("relu", "sae"), tmp_path / "link")


def write_as_sparsify(directory: Path, *, transcode=False, skip=False, seed=0, d_in=10, latents=24, k=3):
    """What `SparseCoder.save_to_disk` writes: save_model(self) and {**cfg.to_dict(), "d_in": d_in}."""
    generator = torch.Generator().manual_seed(seed)
    state = {
        "encoder.weight": torch.randn(latents, d_in, generator=generator),
        "encoder.bias": torch.randn(latents, generator=generator) * 0.1,
        "W_dec": torch.randn(latents, d_in, generator=generator),
        "b_dec": torch.randn(d_in, generator=generator),
    }
    if skip:
        state["W_skip"] = torch.randn(d_in, d_in, generator=generator)
    directory.mkdir(parents=True)
    save_file(state, directory / "sae.safetensors")
    cfg = {"activation": "topk", "expansion_factor": 32, "normalize_decoder": True, "num_latents": latents, "k": k,
           "multi_topk": False, "skip_connection": skip, "transcode": transcode, "d_in": d_in}  # fmt: skip
    (directory / "cfg.json").write_text(json.dumps(cfg))
    return directory


class TestSparsifyLayout:
    @pytest.mark.parametrize(
        ("module", "transcode", "skip", "hooks"),
        [
            ("layers.2", False, False, ("blocks.2.hook_resid_post", None)),
            ("model.layers.16", False, False, ("blocks.16.hook_resid_post", None)),
            ("layers.1.mlp", True, False, ("blocks.1.ln1.hook_out", "blocks.1.hook_mlp_out")),
            ("layers.1.mlp", True, True, ("blocks.1.ln1.hook_out", "blocks.1.hook_mlp_out")),
            ("layers.3.self_attn", False, False, ("blocks.3.hook_attn_out", None)),
        ],
    )
    def test_a_sparsify_file_encodes_as_sparsify_would(self, tmp_path, module, transcode, skip, hooks):
        directory = write_as_sparsify(tmp_path / module, transcode=transcode, skip=skip)
        d = load_dictionary(directory)
        assert (d.hook_name, d.hook_name_out if d.kind != "sae" else None) == hooks
        assert d.kind == ("sae" if not transcode else "skip_transcoder" if skip else "transcoder")
        x = torch.randn(30, 10)
        acts, out = sparsify_reference(directory, x)
        torch.testing.assert_close(d.encode(x), acts)
        torch.testing.assert_close(d(x), out)

    def test_a_seed_subdirectory_takes_its_parents_module_name(self, tmp_path):
        d = load_dictionary(write_as_sparsify(tmp_path / "layers.4" / "seed1"))
        assert d.hook_name == "blocks.4.hook_resid_post"

    @pytest.mark.parametrize(("arch", "kind"), [("topk", "sae"), ("topk", "skip_transcoder")])
    def test_what_we_write_reads_back_and_encodes_identically(self, tmp_path, arch, kind):
        d = random_dictionary(arch, kind, k=3)
        if kind != "sae":  # sparsify's transcoders write their own width
            d = make_dictionary("topk", d_in=10, d_sae=24, k=3, kind=kind, hook_name="blocks.1.ln1.hook_out",
                                hook_name_out="blocks.1.hook_mlp_out")  # fmt: skip
            with torch.no_grad():
                for parameter in d.parameters():
                    parameter.normal_()
        d_sae = d if kind == "sae" else d
        directory = tmp_path / (module_for_hooks(d_sae) or "unnamed")
        save_dictionary(d, directory, format="sparsify")
        assert directory.name == ("layers.1.mlp" if kind != "sae" else "unnamed")
        x = torch.randn(30, 10)
        acts, out = sparsify_reference(directory, x)
        torch.testing.assert_close(acts, d.encode(x))
        torch.testing.assert_close(out, d(x))
        loaded = load_dictionary(directory, hook_name=d.hook_name)
        assert torch.equal(loaded.encode(x), d.encode(x)) and torch.equal(loaded(x), d(x))
        weights = load_file(directory / "sae.safetensors")
        assert torch.equal(weights["encoder.weight"], d.W_enc.T)

    def test_module_names_map_back(self):
        sae = make_dictionary("topk", d_in=4, d_sae=8, k=2, hook_name="blocks.5.hook_resid_post")
        assert module_for_hooks(sae) == "layers.5"
        sae = make_dictionary("topk", d_in=4, d_sae=8, k=2, hook_name="blocks.5.hook_resid_pre")
        assert module_for_hooks(sae) is None  # sparsify hooks module outputs: that is layers.4's output

    def test_refusals(self, tmp_path):
        directory = write_as_sparsify(tmp_path / "layers.2")
        cfg = json.loads((directory / "cfg.json").read_text())
        (directory / "cfg.json").write_text(json.dumps(cfg | {"activation": "groupmax"}))
        with pytest.raises(InputError, match="activation 'groupmax'"):
            load_dictionary(directory)
        (directory / "cfg.json").write_text(json.dumps(cfg | {"signed": True}))
        with pytest.raises(InputError, match="does not know: signed"):
            load_dictionary(directory)
        with pytest.raises(InputError, match="pass hook_name="):
            load_dictionary(write_as_sparsify(tmp_path / "gpt_neox.layers.2"))
        assert load_dictionary(tmp_path / "gpt_neox.layers.2", hook_name="blocks.2.hook_resid_post").hook_name
        with pytest.raises(InputError, match="TopK dictionaries only"):
            save_dictionary(random_dictionary("relu", "sae"), tmp_path / "x", format="sparsify")


REAL = Path(__file__).parent / "data" / "sparsify_1.3.3"


@pytest.mark.parametrize(
    ("case", "kind", "hooks"),
    [
        ("sae/layers.2", "sae", ("blocks.2.hook_resid_post", "blocks.2.hook_resid_post")),
        ("transcoder/layers.1.mlp", "transcoder", ("blocks.1.ln1.hook_out", "blocks.1.hook_mlp_out")),
        ("skip/layers.1.mlp", "skip_transcoder", ("blocks.1.ln1.hook_out", "blocks.1.hook_mlp_out")),
    ],
)
def test_files_written_by_sparsify_1_3_3_itself_encode_as_sparsify_computed(case, kind, hooks):
    """Fixtures written by eai-sparsify 1.3.3's SparseCoder.save_to_disk, with its own forward's
    outputs (data/make_sparsify_files.py, which also checks that sparsify reads what we write)."""
    expected = load_file(REAL / "expected.safetensors")
    d = load_dictionary(REAL / case)
    assert (d.kind, d.hook_name, d.hook_name_out) == (kind, *hooks)
    name = case.split("/")[0]
    with torch.no_grad():
        torch.testing.assert_close(d.encode(expected["x"]), expected[f"{name}.acts"])
        torch.testing.assert_close(d(expected["x"]), expected[f"{name}.out"])


SAELENS = Path(__file__).parent / "data" / "saelens_6.54"


@pytest.mark.parametrize(
    ("case", "architecture", "kind"),
    [
        ("standard", "relu", "sae"),
        ("topk", "topk", "sae"),
        ("topk_rescaled", "topk", "sae"),
        ("jumprelu", "jumprelu", "sae"),
        ("batchtopk", "jumprelu", "sae"),  # SAELens writes a trained BatchTopK as a JumpReLU
        ("transcoder", "relu", "transcoder"),
        ("skip_transcoder", "relu", "skip_transcoder"),
        ("jumprelu_skip_transcoder", "jumprelu", "skip_transcoder"),
    ],
)
def test_files_written_by_saelens_6_54_itself_encode_as_saelens_computed(case, architecture, kind):
    """Fixtures written by SAELens 6.54's own SAE.save_model / save_inference_model with its own
    encode and forward outputs (data/make_saelens_files.py, which also checks that SAELens's
    load_from_disk reads what save_dictionary writes)."""
    expected = load_file(SAELENS / "expected.safetensors")
    d = load_dictionary(SAELENS / case)
    assert (d.architecture, d.kind) == (architecture, kind)
    assert d.hook_name == ("blocks.2.hook_resid_pre" if kind == "sae" else "blocks.1.ln1.hook_normalized")
    with torch.no_grad():
        torch.testing.assert_close(d.encode(expected["x"]), expected[f"{case}.acts"])
        torch.testing.assert_close(d(expected["x"]), expected[f"{case}.out"])


@pytest.mark.parametrize("layout", ["saelens", "sparsify"])
def test_a_cfg_that_is_not_a_json_object_is_refused(tmp_path: Path, layout):
    """cfg.json holding valid JSON that is not an object is refused by name, not read field by field."""
    weights = "sae_weights.safetensors" if layout == "saelens" else "sae.safetensors"
    (tmp_path / weights).write_bytes(b"")
    (tmp_path / "cfg.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="holds a JSON list; a dictionary config is a JSON object"):
        load_dictionary(tmp_path)
