"""Write the sparsify fixtures with eai-sparsify 1.3.3's own code, and check that sparsify reads ours.

Not run by the test suite (sparsify cannot be installed beside this project's dependencies); run by
hand with sparsify importable, e.g.

    pip install --no-deps --target /tmp/sp eai-sparsify==1.3.3 simple-parsing docstring-parser natsort accelerate
    PYTHONPATH=/tmp/sp:. python tests/dictionaries/data/make_sparsify_files.py

It writes, under sparsify_1.3.3/: one directory per coder (an SAE on `layers.2`, a transcoder and a
skip transcoder on `layers.1.mlp`) by `SparseCoder.save_to_disk`, and `expected.safetensors` with
inputs and sparsify's own `forward` outputs (latent activations scattered to [n, latents], output).
Then it saves dictionaries with `interp.dictionaries.save_dictionary(format="sparsify")`, loads them
with `SparseCoder.load_from_disk` and checks sparsify's forward equals ours.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).parent / "sparsify_1.3.3"


def import_sparse_coder():
    # sparsify/__init__.py imports its trainer (datasets, schedulefree, ...); the coder needs none of it
    spec = importlib.util.find_spec("sparsify")
    package = types.ModuleType("sparsify")
    package.__path__ = spec.submodule_search_locations
    sys.modules["sparsify"] = package
    from sparsify.config import SparseCoderConfig
    from sparsify.sparse_coder import SparseCoder

    return SparseCoder, SparseCoderConfig


def dense(acts: torch.Tensor, indices: torch.Tensor, n_latents: int) -> torch.Tensor:
    return torch.zeros(acts.shape[0], n_latents).scatter(-1, indices, acts)


def main() -> None:
    SparseCoder, SparseCoderConfig = import_sparse_coder()
    torch.manual_seed(0)
    x = torch.randn(40, 10)
    expected = {"x": x}
    cases = {
        "sae/layers.2": SparseCoderConfig(num_latents=24, k=3),
        "transcoder/layers.1.mlp": SparseCoderConfig(num_latents=24, k=3, transcode=True),
        "skip/layers.1.mlp": SparseCoderConfig(num_latents=24, k=3, transcode=True, skip_connection=True),
    }
    for name, cfg in cases.items():
        coder = SparseCoder(10, cfg)
        with torch.no_grad():
            for parameter in coder.parameters():
                parameter.normal_()
        coder.save_to_disk(HERE / name)
        out = coder(x)
        key = name.split("/")[0]
        expected[f"{key}.acts"] = dense(out.latent_acts, out.latent_indices, 24).detach()
        expected[f"{key}.out"] = out.sae_out.detach()
    save_file(expected, HERE / "expected.safetensors")

    from interp.dictionaries import load_dictionary, save_dictionary

    with tempfile.TemporaryDirectory() as tmp:
        for name in cases:
            ours = load_dictionary(HERE / name)
            with torch.no_grad():
                for parameter in ours.parameters():
                    parameter.add_(0.1 * torch.randn_like(parameter))
            directory = save_dictionary(ours, Path(tmp) / name, format="sparsify")
            theirs = SparseCoder.load_from_disk(directory)
            out = theirs(x)
            torch.testing.assert_close(dense(out.latent_acts, out.latent_indices, 24), ours.encode(x))
            torch.testing.assert_close(out.sae_out, ours(x).detach())
            print(f"sparsify reads our {name}: forward equal")


if __name__ == "__main__":
    main()
