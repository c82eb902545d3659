"""What `interp info` reports: versions, devices, and which models load offline."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import torch

from interp.model.sources import KNOWN_HUB_IDS, SUPPORTED_ARCHITECTURES, TOY_DIR

PACKAGES = ("interp", "transformer-lens", "transformers", "torch", "circuitsvis", "plotly")


def versions() -> dict[str, str]:
    """Versions of interp and the packages its numbers depend on."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def devices() -> list[str]:
    """The torch devices this machine offers."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def cached_phi_models() -> list[tuple[str, str]]:
    """(repo id, snapshot path) of every Phi checkpoint in the local Hugging Face cache."""
    from huggingface_hub import scan_cache_dir

    try:
        cache = scan_cache_dir()
    except Exception:  # no cache directory yet
        return []
    found = []
    for repo in cache.repos:
        for revision in repo.revisions:
            config = Path(revision.snapshot_path) / "config.json"
            if not config.is_file():
                continue
            data = json.loads(config.read_text())
            if any(a in SUPPORTED_ARCHITECTURES for a in data.get("architectures") or []):
                found.append((repo.repo_id, str(revision.snapshot_path)))
    return sorted(found)


def offline_models() -> list[tuple[str, str]]:
    """Models that load with no network: the toy model, then cached Phi checkpoints."""
    models = [("toy", str(TOY_DIR))] if (TOY_DIR / "model.safetensors").is_file() else []
    return models + cached_phi_models()


def missing_known_models() -> list[str]:
    """Known Phi hub ids that are not in the local Hugging Face cache."""
    cached = {repo for repo, _ in cached_phi_models()}
    return [hub_id for hub_id in KNOWN_HUB_IDS if hub_id not in cached]
