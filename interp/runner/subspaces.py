"""DAS subspaces a run found, read back from its results.json (`interp.load_subspace`).

A `das` analysis writes, for every hook it searched, the learned orthonormal basis, the class means of
the training pairs' source activations in it and the candidate answers, beside the accuracies. Loading
one gives the `DASResult` that `interp.das_steer` turns into a `Steer` for generation, so a subspace
found by a sweep on a GPU box steers text in a notebook without training again.
"""

from __future__ import annotations

from pathlib import Path

import torch

from interp.base.errors import FileKindError, InputError
from interp.base.files import read_json
from interp.methods.representations.das import DASResult

MAX_RESULTS_BYTES = 1 << 30


def load_subspace(run_dir: str | Path, name: str = "das", hook: str | None = None) -> DASResult:
    """The subspace the `das` analysis `name` of the run in `run_dir` learned at `hook` (None: the
    hook with the highest held-out interchange accuracy), with that hook's accuracies."""
    if Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise InputError(f"{run_dir} is not a directory; give a run directory written by `interp run`.")
    path = Path(run_dir) / "results.json"
    try:
        results = read_json(path, MAX_RESULTS_BYTES, "results file")
    except FileNotFoundError:
        raise InputError(
            f"{run_dir} has no results.json; give a run directory written by `interp run`."
        ) from None
    except FileKindError as error:
        raise InputError(str(error)) from None
    analyses = results.get("analyses", []) if isinstance(results, dict) else None
    if not isinstance(analyses, list):
        raise InputError(f"{path} is not a run's results (no list of analyses).")
    entries = {e.get("name"): e for e in analyses if isinstance(e, dict)}
    das = sorted(n for n, e in entries.items() if e.get("kind") == "das")
    if name not in entries or entries[name].get("kind") != "das":
        raise InputError(f"{path} has no das analysis named {name!r}; its das analyses: {das or 'none'}.")
    entry = entries[name]
    hooks = entry["labels"]["hook"]
    values = torch.tensor(entry["values"], dtype=torch.float32)
    if hook is None:
        index = int(values[:, 0].argmax())
    elif hook in hooks:
        index = hooks.index(hook)
    else:
        raise InputError(f"das analysis {name!r} searched no hook {hook!r}; it searched {hooks}.")
    try:
        subspace = entry["subspaces"][index]
        losses = tuple(entry["losses"][index])
    except (KeyError, IndexError, TypeError):
        raise InputError(
            f"das analysis {name!r} in {path} holds no subspaces (written by an older interp, or edited); rerun it."
        ) from None
    return DASResult(
        hook=subspace["hook"],
        position=subspace["position"],
        rank=subspace["rank"],
        basis=torch.tensor(subspace["basis"], dtype=torch.float32),
        accuracy=values[index, 0],
        mean_difference_accuracy=values[index, 1],
        random_accuracy=values[index, 2],
        losses=losses,
        n_train=entry["n_train"],
        n_test=entry["n_test"],
        class_means=torch.tensor(
            [[float("nan")] * subspace["rank"] if m is None else m for m in subspace["class_means"]]
        ),
        answers=tuple(subspace["answers"]),
    )
