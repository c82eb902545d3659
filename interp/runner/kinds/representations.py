"""Representations (`probe`, `sparse_probe`, `das`): what a hook point encodes, read out and interchanged
(`interp.methods.representations`).

`probe` and `sparse_probe` read labelled prompts: from the task's pairs (`labels = "answer"`: each
clean prompt labelled by its answer token; `"clean_or_corrupted"`: every prompt labelled by which of the
two it is) or from `labels_file` (a .jsonl / .csv of prompt, label; relative to the config file). `das`
reads the pairs themselves: denoising interchanges the subspace from the clean prompt into the corrupted
one and expects the clean answer; noising the other way, expecting the wrong answer. DAS interchanges one
position of equal-length prompts, so it reads the pairs of the most common token length (results.json
and the report say how many).

The learned subspaces are written to results.json (`subspaces`); `interp.load_subspace(run_dir,
name, hook)` reads one back as a `DASResult`, which `interp.das_steer` turns into a `Steer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, FiniteFloat, NonNegativeInt, field_validator, model_validator

from interp.base.errors import InputError
from interp.runner.options import AnalysisOptions, Direction
from interp.runner.registry import AnalysisSpec, Computed, Finished, UnitContext, fixed, register

PairLabels = Literal["answer", "clean_or_corrupted"]  # interp.data.labelled_prompts.PairLabels
PROBE_MEASURES = ["accuracy", "shuffled_accuracy", "train_accuracy"]
SPARSE_MEASURES = ["roc_auc", "random_roc_auc", "shuffled_roc_auc", "accuracy"]
SUBSPACES = ["das", "mean_difference", "random"]


class RepresentationOptions(AnalysisOptions):
    """What every representation kind reads: the hooks, the position, the held-out share."""

    position: int = Field(
        -1, description="the position read in every prompt (negative: counted from each prompt's end)"
    )
    test_fraction: float = Field(
        0.25, gt=0, lt=1, description="share of the prompts (pairs, for das) held out for the accuracies"
    )


class LabelOptions(RepresentationOptions):
    """Where a probe's labels come from: the task's pairs, or a file of labelled prompts."""

    labels: PairLabels = Field(
        "answer",
        description="labels from the pairs: 'answer' (each clean prompt's answer token) or "
        "'clean_or_corrupted' (which of the two a prompt is)",
    )
    labels_file: str | None = Field(
        None,
        description="a .jsonl or .csv file of prompt, label (relative to the config file) instead of the pairs",
    )

    @field_validator("labels_file")
    @classmethod
    def _a_file(cls, path: str | None) -> str | None:
        if path is not None and not Path(path).is_file():
            raise ValueError(
                f"labels_file {path!r} is not a file (a relative path is relative to the config file)"
            )
        return path

    def unread(self) -> dict[str, str]:
        if self.labels_file is not None:
            return {"labels": "labels_file gives the prompts and their labels"}
        if "labels" in self.model_fields_set:
            return {"labels_file": f"labels = {self.labels!r} takes the prompts and labels from the pairs"}
        return {}


def _labelled(options: LabelOptions, model, pairs):
    """The labelled prompts as token ids: a labels file's tokenised as the task's pairs are (BOS as the
    task says; unknown words and prompts beyond the context refused by line), or the pairs'."""
    from interp.data.labelled_prompts import from_pairs, read_labels_file, tokenized

    if options.labels_file is not None:
        prepend_bos = bool(getattr(pairs, "prepend_bos", False))
        return tokenized(
            read_labels_file(options.labels_file),
            model.tokenizer,
            prepend_bos,
            getattr(model.cfg, "n_ctx", None),
        )
    return from_pairs(pairs, model.tokenizer, options.labels)


def _default_hooks(model) -> list[str]:
    n = model.cfg.n_layers
    return [f"blocks.{layer}.hook_resid_pre" for layer in range(n)] + [f"blocks.{n - 1}.hook_resid_post"]


def _check_hooks(hooks: list[str], model) -> None:
    """The hooks exist, and each holds one fixed-width activation per position (a probe reads one
    position; attention patterns and scores grow with the prompt)."""
    from interp.base.errors import HookNameError
    from interp.engine import hook_points
    from interp.model.hooks import validate_hook_names

    try:
        validate_hook_names(model, hooks)
    except HookNameError as error:
        raise InputError(str(error).strip('"')) from None
    for hook in hooks:
        try:
            names = hook_points.dims(hook)
        except KeyError:
            continue  # a bridge-only hook: its shape is read as it comes
        if "src_pos" in names or "pos" not in names:
            raise InputError(
                f"{hook} has dims ({' '.join(names)}): its width at one position changes with the prompt's "
                "length, or it has no position axis; read a per-position activation such as attn.hook_z, "
                "hook_attn_out or hook_resid_post"
            )


def _das_width(hook: str, model) -> int:
    """The width of the [batch pos width] activation DAS interchanges at `hook` (others refused)."""
    from interp.engine import hook_points

    try:
        names = hook_points.dims(hook)
    except KeyError:
        names = ()
    widths = {"d_model": model.cfg.d_model, "d_mlp": model.cfg.d_mlp}
    if len(names) != 3 or names[:2] != ("batch", "pos") or names[2] not in widths:
        shown = f"dims ({' '.join(names)})" if names else "no dims the engine knows"
        raise InputError(
            f"das at {hook}: DAS interchanges a [batch pos d_model] or [batch pos d_mlp] activation, and "
            f"{hook} has {shown}; use hook_resid_pre / hook_resid_post, hook_attn_out, hook_mlp_out or "
            "mlp.hook_post"
        )
    return widths[names[2]]


class ProbeOptions(LabelOptions):
    """`probe`: a logistic-regression probe per hook, with a shuffled-label control."""

    kind: Literal["probe"]
    hooks: list[str] | None = Field(
        None,
        min_length=1,
        description="hook points probed (default: every layer's hook_resid_pre and the last hook_resid_post)",
    )
    l2: FiniteFloat = Field(1e-3, ge=0, description="L2 penalty on the probe's standardised weights")
    max_iter: int = Field(200, ge=1, le=10_000, description="L-BFGS iterations per probe")


def _check_labels(options: LabelOptions, model) -> None:
    if options.labels_file is not None:
        _labelled(options, model, None)  # read now: a bad file is an error before any unit runs


def _check_probe(options: ProbeOptions, model) -> None:
    _check_hooks(options.hooks or _default_hooks(model), model)
    _check_labels(options, model)


def _probe(options: ProbeOptions, model, pairs, ctx: UnitContext) -> Computed:
    import torch

    from interp.methods.representations.probes import probe_layers

    data = _labelled(options, model, pairs)
    hooks = options.hooks or _default_hooks(model)
    result = probe_layers(
        model, data.prompts, data.labels, hooks, options.position, test_fraction=options.test_fraction,
        l2=options.l2, max_iter=options.max_iter, seed=ctx.seed, groups=data.groups,
    )  # fmt: skip
    values = torch.stack([result.accuracy, result.shuffled_accuracy, result.train_accuracy], dim=1)
    extra = {
        "classes": list(data.classes), "labels_from": data.source, "chance": result.chance,
        "n_train": result.n_train, "n_test": result.n_test,
    }  # fmt: skip
    return Computed(("hook", "measure"), values, {"hook": list(hooks), "measure": PROBE_MEASURES}, extra)


class SparseProbeOptions(LabelOptions):
    """`sparse_probe`: probes on the top-k units of one hook, against random units and shuffled labels."""

    kind: Literal["sparse_probe"]
    hook: str | None = Field(
        None,
        description="the hook whose units are ranked (default: the last layer's mlp.hook_post, its neurons)",
    )
    dictionary: str | None = Field(
        None,
        description="a saved SAE / transcoder directory (relative to the config), spliced in: its latents are "
        "the units (instead of hook)",
    )
    ks: list[int] = Field(
        default_factory=lambda: [1, 2, 4, 8, 16],
        min_length=1,
        description="probe sizes, strictly increasing, at most the hook's width",
    )
    positive_class: str | None = Field(
        None,
        description="the class read against the others (default: the most frequent, the last in sorted "
        "order among ties: 'clean' for clean_or_corrupted)",
    )
    n_random: int = Field(5, ge=1, le=100, description="random k-unit subsets per k (a control)")
    n_shuffles: int = Field(1, ge=1, le=100, description="shuffled-label refits per k (a control)")
    l2: FiniteFloat = Field(1e-2, gt=0, description="L2 penalty of each probe")
    standardize: bool = Field(True, description="scale each unit by its training spread before fitting")
    max_iter: int = Field(200, ge=1, le=10_000, description="iterations per probe fit")

    @field_validator("ks")
    @classmethod
    def _increasing(cls, ks: list[int]) -> list[int]:
        if ks[0] < 1 or any(b <= a for a, b in zip(ks, ks[1:], strict=False)):
            raise ValueError(f"ks = {ks}: use strictly increasing sizes from 1")
        return ks

    @field_validator("dictionary")
    @classmethod
    def _a_directory(cls, path: str | None) -> str | None:
        if path is not None and not Path(path).is_dir():
            raise ValueError(
                f"dictionary {path!r} is not a directory (a saved dictionary is a folder with cfg.json; a "
                "relative path is relative to the config file)"
            )
        return path

    def unread(self) -> dict[str, str]:
        unread = super().unread()
        if self.dictionary is not None:
            unread["hook"] = "the units are the dictionary's latents, at its own hook point"
        return unread


def _sparse_hook(options: SparseProbeOptions, model) -> str:
    return options.hook or f"blocks.{model.cfg.n_layers - 1}.mlp.hook_post"


def _positive(options: SparseProbeOptions, classes: tuple[str, ...], labels=None) -> int:
    if options.positive_class is None:
        if labels is None:
            return len(classes) - 1
        counts = labels.bincount(minlength=len(classes)).tolist()
        return max(range(len(classes)), key=lambda c: (counts[c], c))  # the most frequent; ties: the last
    if options.positive_class not in classes:
        raise InputError(
            f"positive_class = {options.positive_class!r} is not a class of the labels; use one of {list(classes)}"
        )
    return classes.index(options.positive_class)


def _load_dictionary(options: SparseProbeOptions, model):
    from interp.dictionaries.splice import check_dictionaries
    from interp.runner.kinds.dictionaries import load_files

    (dictionary,) = load_files([options.dictionary], "dictionary")
    try:
        check_dictionaries(model, [dictionary], True)
    except InputError as error:
        raise InputError(f"dictionary = {options.dictionary!r}: {error}") from None
    return dictionary.to(model.cfg.device)


def _check_sparse(options: SparseProbeOptions, model) -> None:
    if options.dictionary is not None:
        _load_dictionary(options, model)
    else:
        _check_hooks([_sparse_hook(options, model)], model)
    if options.labels_file is not None:  # read once, now: a bad file is an error before any unit runs
        _positive(options, _labelled(options, model, None).classes)
    elif options.labels == "clean_or_corrupted":
        _positive(options, ("corrupted", "clean"))


def _sparse_probe(options: SparseProbeOptions, model, pairs, ctx: UnitContext) -> Computed:
    from contextlib import nullcontext

    import torch

    from interp.dictionaries.splice import splice
    from interp.methods.representations.sparse_probes import sparse_probe

    data = _labelled(options, model, pairs)
    positive = _positive(options, data.classes, data.labels)
    dictionary = _load_dictionary(options, model) if options.dictionary is not None else None
    with splice(model, [dictionary], error=True) if dictionary is not None else nullcontext() as spliced:
        hook = (
            spliced.name(dictionary, "hook_acts") if dictionary is not None else _sparse_hook(options, model)
        )
        curve = sparse_probe(
            model, data.prompts, data.labels, hook, options.ks, options.position,
            positive=positive, test_fraction=options.test_fraction, n_random=options.n_random,
            n_shuffles=options.n_shuffles, l2=options.l2, standardize=options.standardize,
            max_iter=options.max_iter, seed=ctx.seed, groups=data.groups,
        )  # fmt: skip
    values = torch.stack([curve.roc_auc, curve.random_roc_auc, curve.shuffled_roc_auc, curve.accuracy], dim=1)
    if values.isnan().any():
        raise InputError(
            f"sparse_probe at {curve.hook}: no control fit converged for some k ({curve.n_rejected} rejected); a "
            f"larger l2 (now {options.l2}) or max_iter (now {options.max_iter}) may converge"
        )
    labels = {"k": [f"k={k}" for k in curve.ks], "measure": SPARSE_MEASURES}
    extra = curve.to_dict() | {"classes": list(data.classes), "positive_class": data.classes[positive]}
    extra["labels_from"] = data.source
    return Computed(("k", "measure"), values, labels, extra)


class DASOptions(RepresentationOptions):
    """`das`: a rank-r DAS subspace per hook, trained on the pairs, against baselines of the same rank."""

    kind: Literal["das"]
    hooks: list[str] | None = Field(
        None,
        min_length=1,
        description="hook points searched, one subspace each (default: every layer's hook_resid_pre and the "
        "last hook_resid_post)",
    )
    direction: Direction = Field(
        "denoising",
        description="denoising: interchange from the clean prompt into the corrupted one, expecting the "
        "answer; noising: from the corrupted into the clean, expecting the wrong answer",
    )
    rank: int = Field(1, ge=1, le=4096, description="dimension of each subspace")
    epochs: NonNegativeInt = Field(20, le=10_000, description="passes over the training pairs")
    lr: FiniteFloat = Field(1e-2, gt=0, description="Adam learning rate")
    batch_size: int = Field(64, ge=1, le=4096, description="pairs per optimisation step")

    @model_validator(mode="after")
    def _some_epochs(self) -> DASOptions:
        if self.epochs == 0:
            raise ValueError("epochs = 0 trains nothing; use 1 or more")
        return self


def _check_das(options: DASOptions, model) -> None:
    hooks = options.hooks or _default_hooks(model)
    _check_hooks(hooks, model)
    for hook in hooks:
        width = _das_width(hook, model)
        if options.rank >= width:
            raise InputError(
                f"rank = {options.rank} is not allowed at {hook}; use 1 .. {width - 1} (its width - 1)"
            )


def das_pairs(pairs, direction: str) -> dict:
    """The pairs DAS reads (those of the most common token length) as base and source prompts, the
    candidate answers (every answer and wrong token among them) and each pair's expected answer."""
    import torch

    from interp.methods.contrastive import base_and_source

    n_tokens = int(pairs.lengths.mode().values)
    rows = torch.nonzero(pairs.lengths == n_tokens).flatten()
    clean, corrupted = pairs.clean_tokens[rows, :n_tokens], pairs.corrupted_tokens[rows, :n_tokens]
    answer, wrong = pairs.answer[rows], pairs.wrong[rows]
    answers = torch.unique(torch.cat([answer, wrong]))
    base, source = base_and_source(clean, corrupted, direction)
    _, expected = base_and_source(answer, wrong, direction)  # the source prompt's own answer
    targets = torch.searchsorted(answers, expected)
    return {"base": base, "source": source, "answers": answers, "targets": targets, "n_tokens": n_tokens}


def _das(options: DASOptions, model, pairs, ctx: UnitContext) -> Computed:
    import torch

    from interp.methods.representations.das import fit_das

    data = das_pairs(pairs, options.direction)
    hooks = options.hooks or _default_hooks(model)
    accuracies, subspaces, losses = [], [], []
    for hook in hooks:
        try:
            result = fit_das(
                model, data["base"], data["source"], data["answers"].tolist(), data["targets"], hook,
                options.position, rank=options.rank, test_fraction=options.test_fraction,
                epochs=options.epochs, batch_size=options.batch_size, lr=options.lr, seed=ctx.seed,
            )  # fmt: skip
        except InputError as error:
            raise InputError(
                f"das reads the {len(data['base'])} of {len(pairs)} pairs with {data['n_tokens']} tokens (the "
                f"most common length; DAS interchanges one position of equal-length prompts): {error}"
            ) from None
        accuracies.append([result.accuracy, result.mean_difference_accuracy, result.random_accuracy])
        losses.append(list(result.losses))
        subspaces.append(
            {
                "hook": hook, "position": options.position, "rank": options.rank,
                "basis": result.basis.tolist(),
                "class_means": [None if row.isnan().any() else row.tolist() for row in result.class_means],
                "answers": data["answers"].tolist(),
                "answer_tokens": [model.tokenizer.decode([int(t)]) for t in data["answers"]],
            }
        )  # fmt: skip
    extra = {
        "subspaces": subspaces, "losses": losses, "n_train": result.n_train, "n_test": result.n_test,
        "n_pairs_used": len(data["base"]), "n_pairs": len(pairs), "n_tokens": data["n_tokens"],
    }  # fmt: skip
    values = torch.tensor([[float(a) for a in row] for row in accuracies])
    return Computed(("hook", "subspace"), values, {"hook": list(hooks), "subspace": SUBSPACES}, extra)


def _finish_probe(options, mean, clean: float, corrupted: float) -> Finished:
    return Finished(
        mean,
        f"held-out accuracy of a probe at position {options.position} of each prompt, beside the same probe "
        "trained on shuffled labels (the control: near chance) and its training accuracy",
        None,
    )


def _finish_sparse(options, mean, clean: float, corrupted: float) -> Finished:
    return Finished(
        mean,
        "held-out ROC AUC of probes on the top-k units (0.5: chance), beside random k-unit subsets and "
        "shuffled-label refits (controls), and the probes' accuracy (compare with chance, the larger class's "
        "share: the fits weight the classes equally)",
        None,
    )


def _finish_das(options, mean, clean: float, corrupted: float) -> Finished:
    return Finished(
        mean,
        f"held-out interchange accuracy ({options.direction}, rank {options.rank}, position "
        f"{options.position}): the share of held-out pairs whose top candidate answer after the interchange is "
        "the expected one, for the learned subspace, the class means' span and a random subspace",
        None,
    )


register(
    AnalysisSpec(
        kind="probe",
        summary="linear probes per hook for a label (the pairs' answers, clean vs corrupted, or a file)",
        explanation=(
            "Linear probes: at each hook, a logistic regression reads the label from the activation at one "
            "position, trained on some prompts and scored on held-out ones (split by prompt). The control is "
            "the same probe trained on shuffled labels: where the probe is well above it, the label is "
            "linearly readable there. Readable is not used: DAS and patching say whether the model uses it."
        ),
        per_prompt=False,
        options=ProbeOptions,
        dims=fixed("hook", "measure"),
        compute=_probe,
        finish=_finish_probe,
        figures=("accuracy_by_hook",),
        check=_check_probe,
    )
)
register(
    AnalysisSpec(
        kind="sparse_probe",
        summary="accuracy vs k of probes on the top-k units of one hook (MLP neurons) or a dictionary's latents",
        explanation=(
            "Sparse probing: the hook's units are ranked by how far apart the class means are on the training "
            "prompts, and a probe on the top k is scored on held-out prompts for each k. Controls: k random "
            "units, and the whole ranking and fit redone on shuffled labels. A label carried by a few units "
            "reaches high accuracy at small k while the controls stay low."
        ),
        per_prompt=False,
        options=SparseProbeOptions,
        dims=fixed("k", "measure"),
        compute=_sparse_probe,
        finish=_finish_sparse,
        figures=("accuracy_by_k",),
        check=_check_sparse,
    )
)
register(
    AnalysisSpec(
        kind="das",
        summary="distributed alignment search: a rank-r subspace per hook whose interchange moves the answer",
        explanation=(
            "Distributed alignment search (Geiger et al. 2023): at each hook, a rank-r subspace of the "
            "activation at one position is trained so that swapping it in from the pair's other prompt makes "
            "the model give the expected answer; interchange accuracy is measured on held-out pairs, against "
            "the span of the class means and a random subspace of the same rank. Where the learned subspace "
            "scores high and the random one does not, the variable is carried there, in that subspace."
        ),
        per_prompt=False,
        options=DASOptions,
        dims=fixed("hook", "subspace"),
        compute=_das,
        finish=_finish_das,
        figures=("accuracy_by_hook",),
        check=_check_das,
    )
)
