"""Where a model comes from: hub ids, short aliases, local directories and the toy model.

Every source resolves to a local directory holding `config.json`, the weights and the
tokenizer files, which is checked before anything heavy is loaded:

- the architecture must be `PhiForCausalLM` (Phi-2, Phi-1.5, Phi-1);
- tokenizer files must be present and must actually tokenize (transformer-lens 4.3 silently
  builds an empty tokenizer for a directory without them, mapping every string to token 0).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from interp.base.errors import FileKindError, ModelSourceError
from interp.base.files import read_json

# a Phi config.json is ~1 KB; anything near this is not one
MAX_CONFIG_BYTES = 1 << 20

ALIASES = {
    "phi-2": "microsoft/phi-2",
    "phi-1_5": "microsoft/phi-1_5",
    "phi-1.5": "microsoft/phi-1_5",
    "phi-1": "microsoft/phi-1",
}
KNOWN_HUB_IDS = tuple(dict.fromkeys(ALIASES.values()))
SUPPORTED_ARCHITECTURES = ("PhiForCausalLM",)
TOY_DIR = Path(__file__).parents[1] / "toy" / "weights"
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"))
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]
PROBE_TOKENS = 16


@dataclass(frozen=True)
class ResolvedSource:
    """A model source turned into a directory on disk."""

    name: str  # what the user asked for, aliases expanded
    path: Path
    kind: Literal["toy", "local", "hub"]


def resolve_source(source: str | os.PathLike) -> ResolvedSource:
    """Turn `toy`, an alias, a local directory or a hub id into a checked local directory."""
    text = str(source)
    if not text.strip():
        raise ModelSourceError(
            "The model source is empty. Allowed: 'toy', the aliases "
            f"{sorted(ALIASES)}, a hub id such as 'microsoft/phi-2', or a local directory."
        )
    if text == "toy":
        resolved = ResolvedSource("toy", TOY_DIR, "toy")
    elif Path(text).expanduser().is_dir():
        resolved = ResolvedSource(text, Path(text).expanduser().resolve(), "local")
    elif Path(text).expanduser().exists():
        raise ModelSourceError(
            f"{text!r} is a file; pass the directory that holds config.json, the weights and the tokenizer."
        )
    else:
        hub_id = ALIASES.get(text, text)
        if hub_id.count("/") != 1 or text.startswith((".", "/", "~")):
            raise ModelSourceError(
                f"{text!r} is neither an existing directory nor a hub id. Allowed: 'toy', the "
                f"aliases {sorted(ALIASES)}, a hub id such as 'microsoft/phi-2', or a local "
                "directory holding a saved PhiForCausalLM with its tokenizer."
            )
        resolved = ResolvedSource(hub_id, _download(hub_id), "hub")
    check_architecture(resolved.path)
    check_tokenizer_files(resolved.path)
    return resolved


def _download(hub_id: str) -> Path:
    """The hub snapshot directory: from the local cache, else downloaded (config checked first)."""
    from huggingface_hub import constants, hf_hub_download, snapshot_download

    # read at call time: huggingface_hub reads HF_HUB_OFFLINE only once, when it is imported
    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "0").lower() in (
        "1",
        "true",
        "yes",
    )
    try:
        config_path = hf_hub_download(hub_id, "config.json", local_files_only=offline)
        check_architecture(Path(config_path).parent)
        return Path(snapshot_download(hub_id, allow_patterns=HUB_PATTERNS, local_files_only=offline))
    except ModelSourceError:
        raise
    except Exception as exc:  # network errors, offline mode, missing repo: all end the same way
        where = "HF_HUB_OFFLINE=1 is set and" if offline else "the hub could not be reached and"
        raise ModelSourceError(
            f"Cannot load {hub_id!r}: {where} no local copy was found in the Hugging Face cache "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).\n"
            "Fix it in one of two ways:\n"
            f"  1. on a machine with network access: `hf download {hub_id}` (Phi-2 is ~5.6 GB), then "
            "copy its cache folder (~/.cache/huggingface/hub) here or set HF_HOME to it;\n"
            f"  2. save the model to a directory and pass it: load_model('/path/to/{hub_id.split('/')[-1]}')."
        ) from exc


def read_config(path: Path) -> dict:
    """A model directory's config.json, or a ModelSourceError naming the file."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelSourceError(
            f"{path} has no config.json; a model directory needs config.json, the weights "
            "(*.safetensors) and tokenizer files, as written by `save_pretrained`."
        )
    try:
        config = read_json(config_file, MAX_CONFIG_BYTES, "model config")
    except FileKindError as error:
        raise ModelSourceError(f"{error} Restore it from the checkpoint.") from None
    if not isinstance(config, dict):
        raise ModelSourceError(
            f"{config_file} holds a JSON {type(config).__name__}; a model's config.json is a JSON object."
        )
    return config


def check_architecture(path: Path) -> None:
    """Refuse anything but a PhiForCausalLM (the old remote-code phi-msft format included)."""
    config = read_config(path)
    architectures = config.get("architectures") or []
    model_type = config.get("model_type")
    if model_type == "phi" and (
        not architectures or any(a in SUPPORTED_ARCHITECTURES for a in architectures)
    ):
        return
    if model_type == "phi-msft":
        raise ModelSourceError(
            f"{path} holds Phi in the old remote-code format (model_type 'phi-msft'). interp "
            "supports the transformers-native format (model_type 'phi', PhiForCausalLM), which "
            "the hub's current revisions of microsoft/phi-2, phi-1_5 and phi-1 use."
        )
    raise ModelSourceError(
        f"{path} holds a {architectures or model_type!r} model; interp supports only "
        f"{', '.join(SUPPORTED_ARCHITECTURES)} ({', '.join(KNOWN_HUB_IDS)} and models saved "
        "in that architecture)."
    )


def check_tokenizer_files(path: Path) -> None:
    """Refuse a model directory without tokenizer files, naming the files looked for."""
    for file_set in TOKENIZER_FILE_SETS:
        if all((path / name).is_file() for name in file_set):
            return
    present = sorted(p.name for p in path.iterdir())
    raise ModelSourceError(
        f"{path} has no tokenizer: expected tokenizer.json (or vocab.json + merges.txt) beside "
        f"config.json, found {present}. Save the tokenizer with the model "
        "(`tokenizer.save_pretrained(dir)`) or copy the tokenizer files from the original checkpoint."
    )


def load_tokenizer(path: Path):
    """Load the directory's tokenizer and prove it tokenizes: vocabulary tokens round-trip."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except Exception as error:  # an empty, truncated or foreign tokenizer file fails deep in tokenizers
        files = [name for names in TOKENIZER_FILE_SETS for name in names if (path / name).is_file()]
        raise ModelSourceError(
            f"The tokenizer in {path} cannot be read ({', '.join(files)}: {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). Replace the tokenizer files with the "
            "original checkpoint's."
        ) from None
    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_ids)
    regular = sorted(i for i in vocab.values() if i not in special)
    probes = regular[:: max(1, len(regular) // PROBE_TOKENS)][:PROBE_TOKENS]
    round_trips = [tokenizer.encode(tokenizer.decode([i]), add_special_tokens=False) == [i] for i in probes]
    if len(regular) < 2 or sum(round_trips) < len(probes) / 2:
        raise ModelSourceError(
            f"The tokenizer in {path} does not tokenize: {len(vocab)} vocabulary entries, "
            f"{sum(round_trips)} of {len(probes)} probe tokens survive decode -> encode. Its files "
            "are empty or unreadable; replace them with the original checkpoint's tokenizer files."
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
