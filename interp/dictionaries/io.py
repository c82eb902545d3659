"""`save_dictionary` and `load_dictionary`: a directory in SAELens's or eai-sparsify's layout.

The layout is recognised from the files: `sae_weights.safetensors` is SAELens's, `sae.safetensors`
sparsify's (both beside a `cfg.json`). Saving writes SAELens's layout unless `format="sparsify"`.
See `formats/` for what each layout holds and how its fields are honoured or refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from jaxtyping import Float
from torch import Tensor

from interp.base.errors import InputError
from interp.dictionaries.base import Dictionary
from interp.dictionaries.formats import saelens, sparsify


def save_dictionary(
    dictionary: Dictionary,
    directory: str | Path,
    *,
    format: Literal["saelens", "sparsify"] = "saelens",
    log_density: Float[Tensor, " d_sae"] | None = None,
    model_name: str | None = None,
) -> Path:
    """Write `dictionary` into `directory` (created; files replaced atomically).

    `log_density` (log10 firing frequency per latent, e.g. from `evaluate_dictionary`) becomes
    SAELens's `sparsity.safetensors`; `model_name` is recorded in its metadata. For sparsify's layout
    name the directory after the module (`interp.dictionaries.formats.sparsify.module_for_hooks`).
    """
    if not isinstance(dictionary, Dictionary):
        raise InputError(f"save_dictionary saves a Dictionary, not a {type(dictionary).__name__}.")
    if format == "saelens":
        return saelens.write_saelens(dictionary, directory, log_density=log_density, model_name=model_name)
    if format == "sparsify":
        if log_density is not None or model_name is not None:
            raise InputError(
                "sparsify's layout has no place for log_density or model_name; use format='saelens'."
            )
        return sparsify.write_sparsify(dictionary, directory)
    raise InputError(f"format={format!r} is not allowed; use 'saelens' or 'sparsify'.")


def load_dictionary(
    path: str | Path,
    *,
    hook_name: str | None = None,
    hook_name_out: str | None = None,
    ignore_fields: tuple[str, ...] = (),
) -> Dictionary:
    """Read a dictionary saved by SAELens, eai-sparsify or `save_dictionary`.

    `hook_name` / `hook_name_out` name the hooks where the file does not (sparsify's module names
    outside the known ones); a file that names others is refused. `ignore_fields` accepts SAELens cfg
    fields this reader does not know. The result carries `file_metadata` (descriptive fields) and
    `log_density` (SAELens's sparsity file, or None).
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(
            f"{path} is not a directory; a dictionary is a directory holding cfg.json and weights."
        )
    if not (path / "cfg.json").is_file():
        raise InputError(f"{path} has no cfg.json; neither SAELens's nor sparsify's layout.")
    if (path / saelens.WEIGHTS).is_file():
        return saelens.read_saelens(
            path, hook_name=hook_name, hook_name_out=hook_name_out, ignore_fields=ignore_fields
        )
    if (path / sparsify.WEIGHTS).is_file():
        if ignore_fields:
            raise InputError("ignore_fields applies to SAELens cfgs; this is sparsify's layout.")
        return sparsify.read_sparsify(path, hook_name=hook_name, hook_name_out=hook_name_out)
    present = sorted(p.name for p in path.iterdir())
    raise InputError(
        f"{path} holds {', '.join(present) or 'nothing'}: no {saelens.WEIGHTS} (SAELens) or {sparsify.WEIGHTS} (sparsify)."
    )
