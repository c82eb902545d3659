"""How good a dictionary is, on held-out activations and through the model.

On activations (`evaluate_dictionary`), with y the target (the input for an SAE) and y_hat the output:

- `l0`: latents active per token, averaged;
- `explained_variance` = 1 - sum ||y - y_hat||^2 / sum ||y - mean(y)||^2 over tokens; `fvu` = 1 - it;
- `cosine`: mean over tokens of cos(y, y_hat); `mse`: mean over tokens of ||y - y_hat||^2;
- `density` per latent (fraction of tokens it fires on), `dead_fraction` (never fired),
  `dense_fraction` (fires on more than `dense_threshold` of tokens) and a histogram of
  log10(density + 1e-10) (SAELens's `sparsity` value; dead latents fall in the lowest bin).

Through the model (`evaluate_on_model`), on token batches: the same activation metrics, plus the
next-token cross-entropy clean, spliced (the dictionary's output replaces the activation it writes:
for an SAE its reconstruction at `hook_name`, for a transcoder its prediction at `hook_name_out` from
the input at `hook_name`) and zero-ablated (that activation set to zero), `ce_loss_recovered` =
(CE_zero - CE_spliced) / (CE_zero - CE_clean) (NaN when zero ablation costs nothing), and `kl`, the
mean KL(clean || spliced) of next-token distributions. Hooks are added with `run_with_hooks`, which
removes them in a `finally`; hooks a user left on the model are refused first.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.dictionaries.base import Dictionary
from interp.dictionaries.streaming import model_activations, token_batches
from interp.dictionaries.training import activation_batches
from interp.model.hooks import refuse_user_hooks
from interp.model.loading import HookedPhi

LOG_DENSITY_EPS = 1e-10


@dataclass
class DictionaryMetrics:
    """What `evaluate_dictionary` / `evaluate_on_model` measured (see the module docstring)."""

    n_tokens: int
    l0: float
    mse: float
    explained_variance: float
    fvu: float
    cosine: float
    dead_fraction: float
    dense_fraction: float
    density: Float[Tensor, " d_sae"]
    histogram_counts: Int[Tensor, " bin"]
    histogram_edges: Tensor  # [bin + 1] edges in log10(density)
    ce_clean: float | None = None
    ce_spliced: float | None = None
    ce_zero_ablated: float | None = None
    ce_loss_recovered: float | None = None
    kl: float | None = None

    @property
    def log_density(self) -> Float[Tensor, " d_sae"]:
        """log10(density + 1e-10): what SAELens's `sparsity.safetensors` holds."""
        return torch.log10(self.density + LOG_DENSITY_EPS)

    def to_dict(self) -> dict:
        """Plain JSON values (the per-latent density left out; the histogram kept)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "density"}
        out["histogram_counts"] = self.histogram_counts.tolist()
        out["histogram_edges"] = self.histogram_edges.tolist()
        return out


class _Accumulator:
    """Sums over token batches, in float64, from which the metrics follow."""

    def __init__(self, d_sae: int, d_out: int):
        self.n = 0
        self.fired = torch.zeros(d_sae, dtype=torch.float64)
        self.active = 0.0
        self.squared_error = 0.0
        self.cosine = 0.0
        self.sum_y = torch.zeros(d_out, dtype=torch.float64)
        self.sum_y2 = 0.0

    @torch.no_grad()
    def add(self, dictionary: Dictionary, x: Tensor, y: Tensor) -> Tensor:
        x, y = x.to(dictionary.W_dec.device, torch.float32), y.to(dictionary.W_dec.device, torch.float32)
        acts = dictionary.encode(x)
        out = dictionary.decode(acts) + (dictionary.skip(x) if dictionary.W_skip is not None else 0)
        on = acts > 0
        self.n += x.shape[0]
        self.fired += on.sum(0).double().cpu()
        self.active += float(on.sum())
        self.squared_error += float((y - out).double().pow(2).sum())
        self.cosine += float(F.cosine_similarity(out, y, dim=-1, eps=1e-12).double().sum())
        self.sum_y += y.double().sum(0).cpu()
        self.sum_y2 += float(y.double().pow(2).sum())
        return out

    def metrics(self, dense_threshold: float, bins: int) -> DictionaryMetrics:
        if self.n == 0:
            raise InputError("No activations to evaluate on.")
        variance = self.sum_y2 - float(self.sum_y.pow(2).sum()) / self.n
        ev = 1 - self.squared_error / variance if variance > 0 else float("nan")
        density = (self.fired / self.n).float()
        log_density = torch.log10(density + LOG_DENSITY_EPS)
        edges = torch.linspace(math.log10(LOG_DENSITY_EPS), 0.0, bins + 1)
        counts = torch.histc(log_density.clamp(edges[0], edges[-1]), bins=bins, min=float(edges[0]), max=0.0)
        return DictionaryMetrics(
            n_tokens=self.n,
            l0=self.active / self.n,
            mse=self.squared_error / self.n,
            explained_variance=ev,
            fvu=1 - ev,
            cosine=self.cosine / self.n,
            dead_fraction=float((self.fired == 0).double().mean()),
            dense_fraction=float((density > dense_threshold).double().mean()),
            density=density,
            histogram_counts=counts.long(),
            histogram_edges=edges,
        )


def evaluate_dictionary(
    dictionary: Dictionary,
    activations: Tensor | Iterable,
    *,
    targets: Tensor | None = None,
    batch_tokens: int = 8192,
    dense_threshold: float = 0.1,
    bins: int = 50,
) -> DictionaryMetrics:
    """Metrics on held-out activations: a tensor `[..., d_in]` (with `targets` for a transcoder) or
    an iterator of tensors / `(x, target)` pairs, as `train_dictionary` takes them."""
    if dictionary.kind != "sae" and isinstance(activations, Tensor) and targets is None:
        raise InputError(
            f"a {dictionary.kind} is evaluated against targets= (activations of its output hook)."
        )
    if not 0 < dense_threshold <= 1 or bins < 1:
        raise InputError("dense_threshold must be in (0, 1] and bins >= 1.")
    pairs, _ = activation_batches(activations, targets, None)
    accumulator = _Accumulator(dictionary.d_sae, dictionary.d_out)
    for x, y in pairs:
        x = x.reshape(-1, x.shape[-1])
        y = x if y is None else y.reshape(-1, y.shape[-1])
        if dictionary.kind != "sae" and y is x:
            raise InputError(f"a {dictionary.kind} is evaluated against (x, target) pairs.")
        for start in range(0, x.shape[0], batch_tokens):
            accumulator.add(dictionary, x[start : start + batch_tokens], y[start : start + batch_tokens])
    return accumulator.metrics(dense_threshold, bins)


def _next_token_losses(
    logits: Float[Tensor, "batch pos d_vocab"],
    tokens: Int[Tensor, "batch pos"],
    keep: Bool[Tensor, "batch pos"],
) -> tuple[Tensor, Tensor]:
    """Per-prediction cross-entropy and log-probabilities at the kept (predicting) positions."""
    log_probs = logits[:, :-1].float().log_softmax(-1)
    targets = tokens[:, 1:].to(log_probs.device)
    valid = keep[:, 1:] & keep[:, :-1]
    ce = -log_probs.gather(-1, targets[..., None])[..., 0]
    return ce[valid.to(ce.device)], log_probs[valid.to(ce.device)]


def _written(dictionary: Dictionary, x: Tensor, like: Tensor) -> Tensor:
    """The dictionary's output for `x`, on the device and in the dtype of the activation it replaces."""
    return dictionary(x.to(dictionary.W_dec.device)).to(like.device, like.dtype)


def _splice_hooks(dictionary: Dictionary, mode: str) -> list:
    """Forward hooks that write the dictionary's output (`spliced`) or zeros (`zero`)."""
    if mode == "zero":
        return [(dictionary.hook_name_out, lambda act, hook: torch.zeros_like(act))]
    if dictionary.kind == "sae":
        return [(dictionary.hook_name, lambda act, hook: _written(dictionary, act, act))]
    saved: dict[str, Tensor] = {}

    def read(act: Tensor, hook) -> None:
        saved["x"] = act

    def write(act: Tensor, hook) -> Tensor:
        if "x" not in saved:
            raise InputError(f"{dictionary.hook_name!r} did not run before {dictionary.hook_name_out!r}.")
        return _written(dictionary, saved.pop("x"), act)

    return [(dictionary.hook_name, read), (dictionary.hook_name_out, write)]


def evaluate_on_model(
    model: HookedPhi,
    dictionary: Dictionary,
    tokens: Int[Tensor, "batch pos"] | Iterable,
    *,
    model_batch: int = 32,
    dense_threshold: float = 0.1,
    bins: int = 50,
) -> DictionaryMetrics:
    """Activation metrics and CE loss recovered / KL through the model, on held-out token batches
    (a `[batch, pos]` tensor or an iterator of tensors or `(tokens, mask)` pairs)."""
    if dictionary.hook_name is None or dictionary.hook_name_out is None:
        raise InputError(f"{dictionary!r} has no hook names: say which hook it reads (and writes).")
    refuse_user_hooks(model, "evaluate_on_model")
    names = (
        [dictionary.hook_name]
        if dictionary.kind == "sae"
        else [dictionary.hook_name, dictionary.hook_name_out]
    )
    batches, _ = token_batches(tokens, model_batch)
    accumulator = _Accumulator(dictionary.d_sae, dictionary.d_out)
    ce = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    kl, n_predictions = 0.0, 0
    dictionary.eval()
    for batch_tokens, mask in batches:
        keep = torch.ones_like(batch_tokens, dtype=torch.bool) if mask is None else mask
        acts = model_activations(model, batch_tokens, names, mask=keep)
        accumulator.add(dictionary, acts[names[0]], acts[names[-1]])
        device_tokens = batch_tokens.to(model.cfg.device)
        with torch.no_grad():
            clean = model(device_tokens)
            spliced = model.run_with_hooks(device_tokens, fwd_hooks=_splice_hooks(dictionary, "spliced"))
            zero = model.run_with_hooks(device_tokens, fwd_hooks=_splice_hooks(dictionary, "zero"))
        losses = {}
        for name, logits in (("clean", clean), ("spliced", spliced), ("zero", zero)):
            losses[name] = _next_token_losses(logits, batch_tokens, keep)
            ce[name] += float(losses[name][0].double().sum())
        clean_lp, spliced_lp = losses["clean"][1], losses["spliced"][1]
        kl += float((clean_lp.exp() * (clean_lp - spliced_lp)).sum(-1).double().sum())
        n_predictions += losses["clean"][0].numel()
    if n_predictions == 0:
        raise InputError("No next-token predictions to score: the token batches are empty or one token long.")
    metrics = accumulator.metrics(dense_threshold, bins)
    metrics.ce_clean, metrics.ce_spliced, metrics.ce_zero_ablated = (
        ce[k] / n_predictions for k in ("clean", "spliced", "zero")
    )
    gap = metrics.ce_zero_ablated - metrics.ce_clean
    metrics.ce_loss_recovered = (
        (metrics.ce_zero_ablated - metrics.ce_spliced) / gap if gap != 0 else float("nan")
    )
    metrics.kl = kl / n_predictions
    return metrics
