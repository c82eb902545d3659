"""`train_dictionary`: fit a dictionary to activations given as a tensor or an iterator of batches.

What a training run does, in order:

- activations (any leading axes, flattened to tokens; float32) go through a seeded shuffling buffer:
  when it holds `buffer_tokens` rows it is permuted and its first half is served as batches of
  `batch_tokens` rows, the other half stays to mix with what comes next (at the end, all of it);
- before the first step `b_dec` is initialised from the first buffer-full of data: for an SAE the
  geometric median of the inputs (Weiszfeld's iterations), for a transcoder the mean of the targets
  (`b_dec_init="auto"`; or name one of `geometric_median`, `mean`, `zeros`); a transcoder, whose
  input is not centred by `b_dec`, has `b_enc` set so that its pre-activations start at mean zero
  on that data (otherwise the few latents aligned with the input's mean win every TopK slot and
  most others die at once);
- with `normalize_activations`, inputs (and a transcoder's targets) are scaled by constants that
  give them a mean norm of sqrt(width) (estimated on that first buffer; Anthropic's April 2024
  update), training runs in those units, and the constants are folded into the weights at the end
  (`scale_dictionary`), so the result reads and writes raw activations;
- Adam with a linear learning-rate warm-up over `lr_warmup_steps` and a linear decay to zero over
  the last `lr_decay_fraction` of the steps (which needs the run's length: `n_tokens`, or a tensor);
- architectures with unit-norm decoders (all but ReLU + L1) have the gradient along each decoder row
  removed before the step and rows renormalised after it;
- a latent is dead once it has not fired for `dead_after_tokens` tokens (AuxK uses that mask);
  every `log_every` steps the log records the losses, L0, explained variance of the batch, the dead
  fraction and the learning rate (`dictionary.training_log`).

`DictionaryTrainer` is the same machinery fed by `push`, which is how `streaming.py` trains several
dictionaries from one forward pass.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from interp.base.console import say
from interp.base.errors import InputError
from interp.dictionaries.base import Dictionary, warmup_factor

BDecInit = Literal["auto", "geometric_median", "mean", "zeros"]


@dataclass
class TrainingConfig:
    """How a dictionary is trained (the dictionary's own config holds k and sparsity coefficients)."""

    batch_tokens: int = 4096
    """Activation vectors per optimiser step."""
    lr: float = 1e-3
    """Adam's peak learning rate."""
    lr_warmup_steps: int = 0
    """Steps of linear warm-up from 0 to `lr`."""
    lr_decay_fraction: float = 0.2
    """Final fraction of the steps over which the learning rate decays linearly to 0 (0: none)."""
    n_tokens: int | None = None
    """Tokens to train on. None: one pass over the data (a tensor is cycled when n_tokens exceeds it)."""
    buffer_tokens: int = 65536
    """Rows held in the shuffling buffer (at least 2 batches)."""
    seed: int = 0
    """Seed of the shuffling buffer's permutations."""
    b_dec_init: BDecInit = "auto"
    """How `b_dec` starts (see the module docstring)."""
    normalize_activations: bool = False
    """Train on inputs (and targets) scaled by constants that make their mean norm sqrt(width),
    estimated on the first buffer, and fold the constants into the weights at the end, so the
    dictionary reads and writes raw activations. Makes learning rates and coefficients transfer
    across hooks and models; the log's losses are then in scaled units."""
    dead_after_tokens: int = 1_000_000
    """A latent that has not fired for this many tokens counts as dead."""
    log_every: int = 50
    """Steps between log records (the last step is always logged)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam's betas."""
    progress: bool = False
    """Print each log record as one line (step, tokens, losses, L0, explained variance, dead fraction)."""

    def __post_init__(self) -> None:
        positive = {"batch_tokens": self.batch_tokens, "dead_after_tokens": self.dead_after_tokens}
        positive |= {"log_every": self.log_every, "buffer_tokens": self.buffer_tokens}
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name}={value!r} is not allowed; it must be a positive integer.")
        if self.buffer_tokens < 2 * self.batch_tokens:
            raise InputError(
                f"buffer_tokens={self.buffer_tokens} is smaller than 2 x batch_tokens={self.batch_tokens}; "
                "the buffer serves half its rows at a time, so it must hold at least two batches."
            )
        if not self.lr > 0 or self.lr_warmup_steps < 0 or not 0 <= self.lr_decay_fraction <= 1:
            raise InputError("lr must be > 0, lr_warmup_steps >= 0 and lr_decay_fraction in [0, 1].")
        if self.n_tokens is not None and (not isinstance(self.n_tokens, int) or self.n_tokens < 1):
            raise InputError(f"n_tokens={self.n_tokens!r} is not allowed; use None or a positive integer.")
        if self.b_dec_init not in ("auto", "geometric_median", "mean", "zeros"):
            raise InputError(
                f"b_dec_init={self.b_dec_init!r} is not allowed; use auto, geometric_median, mean or zeros."
            )


def geometric_median(
    points: Float[Tensor, "token d_in"], *, iterations: int = 100, tolerance: float = 1e-6
) -> Float[Tensor, " d_in"]:
    """The point minimising the summed Euclidean distance to `points` (Weiszfeld's algorithm)."""
    points = points.to(torch.float32)
    median = points.mean(0)
    for _ in range(iterations):
        distances = (points - median).norm(dim=-1).clamp_min(1e-8)
        weights = 1.0 / distances
        new = (weights[:, None] * points).sum(0) / weights.sum()
        moved = (new - median).norm()
        median = new
        if moved <= tolerance * median.norm().clamp_min(1e-8):
            break
    return median


@torch.no_grad()
def scale_dictionary(dictionary: Dictionary, c_in: float, c_out: float) -> None:
    """Change the weights in place so that the new dictionary on `x` equals the old one on
    `c_in * x`, divided by `c_out`. Decoder rows keep their norms: the latents' activations (and
    thresholds) are what scales, by 1/c_out, which every architecture here is equivariant to."""
    d = dictionary
    if d.kind == "sae" and c_in != c_out:
        raise InputError("an SAE reads and writes one space: c_in must equal c_out.")
    d.W_enc.mul_(c_in / c_out)
    d.b_enc.div_(c_out)
    d.b_dec.div_(c_out)
    if isinstance(getattr(d, "threshold", None), Tensor):
        d.threshold.div_(c_out)
    if d.W_skip is not None:
        d.W_skip.mul_(c_in / c_out)


class ShuffleBuffer:
    """Rows in, shuffled batches out; seeded, so a run is reproducible."""

    def __init__(self, capacity: int, batch_size: int, seed: int):
        self.capacity, self.batch_size = capacity, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.rows: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.rows is None else self.rows.shape[0]

    def add(self, rows: Tensor) -> None:
        self.rows = rows if self.rows is None else torch.cat([self.rows, rows])

    def release(self) -> Iterator[Tensor]:
        """Yield the batches a full buffer releases (half of it at a time, permuted)."""
        while len(self) >= self.capacity:
            self._permute()
            n_out = (self.capacity // 2) // self.batch_size * self.batch_size
            out, self.rows = self.rows[:n_out], self.rows[n_out:]
            yield from out.split(self.batch_size)

    def flush(self) -> Iterator[Tensor]:
        """Yield what is left, shuffled, in full batches (a final partial batch is dropped)."""
        if self.rows is None or len(self) == 0:
            return
        self._permute()
        n_out = len(self) // self.batch_size * self.batch_size
        out, self.rows = self.rows[:n_out], None
        yield from out.split(self.batch_size)

    def _permute(self) -> None:
        order = torch.randperm(len(self), generator=self.generator).to(self.rows.device)
        self.rows = self.rows[order]

    def state_dict(self) -> dict:
        """The rows held and the generator's state: what a checkpoint needs to go on identically."""
        return {"rows": self.rows, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.rows = state["rows"]
        self.generator.set_state(state["generator"])


class DictionaryTrainer:
    """Trains one dictionary from pushed activations (inputs, and targets for a transcoder)."""

    def __init__(self, dictionary: Dictionary, config: TrainingConfig, total_tokens: int | None):
        self.dictionary, self.config = dictionary, config
        if config.lr_decay_fraction > 0 and total_tokens is None:
            raise InputError(
                "lr_decay_fraction > 0 needs the run's length: give n_tokens (the data is an iterator "
                "of unknown length), or set lr_decay_fraction=0."
            )
        self.total_steps = None if total_tokens is None else max(1, total_tokens // config.batch_tokens)
        self.total_tokens = total_tokens
        self.buffer = ShuffleBuffer(config.buffer_tokens, config.batch_tokens, config.seed)
        self.step = 0
        self.tokens = 0
        self.pushed = 0
        self.initialized = False
        self.scale: tuple[float, float] | None = None  # (input, output) factors while training
        device = dictionary.W_dec.device
        self.since_fired = torch.zeros(dictionary.d_sae, dtype=torch.long, device=device)
        self.optimizer = torch.optim.Adam(dictionary.parameters(), lr=config.lr, betas=config.adam_betas)
        self.log: list[dict] = []
        self._last: dict[str, Tensor] = {}  # the last step's statistics (0-d tensors), for the log
        dictionary.training_log = self.log

    # --- checkpoints ----------------------------------------------------------------------------
    _COUNTERS = ("step", "tokens", "pushed", "initialized")

    def state_dict(self) -> dict:
        """Everything training depends on from here: weights, Adam's moments, the buffer's rows and
        generator, counters, dead-latent clocks, the activation scale, the log. `load_state_dict`
        of it into a trainer made with the same dictionary config and `TrainingConfig` goes on to
        exactly the result the uninterrupted trainer reaches."""
        return {
            "dictionary": {k: v.detach().clone() for k, v in self.dictionary.state_dict().items()},
            "trained": self.dictionary.trained,
            "optimizer": self.optimizer.state_dict(),
            "buffer": self.buffer.state_dict(),
            **{name: getattr(self, name) for name in self._COUNTERS},
            "scale": list(self.scale) if self.scale is not None else None,
            "since_fired": self.since_fired.clone(),
            "last": dict(self._last),
            "log": json.dumps(self.log),
        }

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.dictionary.load_state_dict(state["dictionary"])
        self.dictionary.trained = bool(state["trained"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        for name in self._COUNTERS:
            setattr(self, name, type(getattr(self, name))(state[name]))
        self.scale = tuple(state["scale"]) if state["scale"] is not None else None
        self.since_fired.copy_(state["since_fired"])
        self._last = dict(state["last"])
        self.log[:] = json.loads(state["log"])

    @property
    def done(self) -> bool:
        return self.total_tokens is not None and self.tokens + self.config.batch_tokens > self.total_tokens

    def push(self, x: Float[Tensor, "... d_in"], target: Float[Tensor, "... d_out"] | None = None) -> None:
        """Add activations (and a transcoder's targets, aligned row by row) and train on what the
        buffer releases."""
        d = self.dictionary
        rows = einops.rearrange(x.detach(), "... d -> (...) d").to(torch.float32)
        if rows.shape[-1] != d.d_in:
            raise InputError(
                f"activations have width {rows.shape[-1]}, but the dictionary reads d_in={d.d_in}."
            )
        if d.kind == "sae":
            if target is not None:
                raise InputError("targets are for transcoders; an SAE reconstructs its input.")
        else:
            if target is None:
                raise InputError(
                    f"a {d.kind} needs targets (activations of {d.hook_name_out or 'its output hook'})."
                )
            target_rows = einops.rearrange(target.detach(), "... d -> (...) d").to(torch.float32)
            if target_rows.shape != (rows.shape[0], d.d_out):
                raise InputError(
                    f"targets have shape {tuple(target_rows.shape)}; expected ({rows.shape[0]}, {d.d_out})."
                )
            rows = torch.cat([rows, target_rows], dim=-1)
        self.pushed += rows.shape[0]
        rows = rows.to(d.W_dec.device)
        self.buffer.add(self._scaled(rows) if self.scale is not None else rows)
        if not self.initialized and len(self.buffer) >= self.config.buffer_tokens:
            self._init_b_dec()
        for batch in self.buffer.release():
            if self.done:
                return
            self._train_step(batch)

    def finish(self) -> Dictionary:
        """Train on what the buffer still holds, then return the dictionary in eval mode."""
        if not self.initialized and len(self.buffer):
            self._init_b_dec()
        for batch in self.buffer.flush():
            if self.done:
                break
            self._train_step(batch)
        if self.step == 0:
            raise InputError(
                f"{self.pushed} activation rows are fewer than one batch of batch_tokens="
                f"{self.config.batch_tokens}; give more data or a smaller batch."
            )
        if not self.log or self.log[-1]["step"] != self.step:
            self._record(self._last)
        if self.scale is not None:
            scale_dictionary(self.dictionary, *self.scale)  # back to raw activations
            self.scale = None
        self.dictionary.trained = True
        return self.dictionary.eval()

    def _scaled(self, rows: Tensor) -> Tensor:
        d, (c_in, c_out) = self.dictionary, self.scale
        if d.kind == "sae":
            return rows * c_in
        return torch.cat([rows[:, : d.d_in] * c_in, rows[:, d.d_in :] * c_out], dim=-1)

    def _split(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        d = self.dictionary
        if d.kind == "sae":
            return batch, batch
        return batch[:, : d.d_in], batch[:, d.d_in :]

    @torch.no_grad()
    def _init_b_dec(self) -> None:
        d, how = self.dictionary, self.config.b_dec_init
        if self.config.normalize_activations:
            sample = self.buffer.rows[:32768]
            c_in = d.d_in**0.5 / float(sample[:, : d.d_in].norm(dim=-1).mean().clamp_min(1e-12))
            c_out = (
                c_in
                if d.kind == "sae"
                else d.d_out**0.5 / float(sample[:, d.d_in :].norm(dim=-1).mean().clamp_min(1e-12))
            )
            self.scale = (c_in, c_out)
            self.buffer.rows = self._scaled(self.buffer.rows)
            if d.trained:  # go on from the same function, in scaled units (a random init stays as it is)
                scale_dictionary(d, 1 / c_in, 1 / c_out)
        if d.trained:  # training goes on: b_dec and b_enc are the trained ones
            self.initialized = True
            return
        if how == "auto":
            how = "geometric_median" if d.kind == "sae" else "mean"
        if how == "zeros":
            d.b_dec.zero_()
        else:
            rows = self.buffer.rows
            points = rows[:, : d.d_in] if d.kind == "sae" else rows[:, d.d_in :]
            points = points[:32768]
            d.b_dec.copy_(geometric_median(points) if how == "geometric_median" else points.mean(0))
        if d.kind != "sae":  # no b_dec is subtracted from a transcoder's input: centre its pre-activations
            d.b_enc.copy_(-(self.buffer.rows[:32768, : d.d_in].mean(0) @ d.W_enc))
        self.initialized = True

    def _lr(self) -> float:
        cfg, step = self.config, self.step
        lr = cfg.lr * warmup_factor(step, cfg.lr_warmup_steps)
        if self.total_steps is not None and cfg.lr_decay_fraction > 0:
            decay_steps = max(1, math.ceil(cfg.lr_decay_fraction * self.total_steps))
            remaining = self.total_steps - step
            lr *= min(1.0, remaining / decay_steps)
        return max(lr, 0.0)

    def _train_step(self, batch: Tensor) -> None:
        d, cfg = self.dictionary, self.config
        d.train()
        x, target = self._split(batch)
        dead = self.since_fired >= cfg.dead_after_tokens
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr()
        acts, out, losses = d.training_losses(x, target, dead, self.step)
        loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if d.unit_norm_decoder:
            d.remove_parallel_decoder_grad()
        self.optimizer.step()
        if d.unit_norm_decoder:
            d.normalize_decoder()
        d.after_step()
        with torch.no_grad():
            on = acts > 0
            self.since_fired += batch.shape[0]
            self.since_fired[on.any(0)] = 0
            variance = (target - target.mean(0)).pow(2).sum()
            self._last = {
                **{f"loss.{name}": value.detach() for name, value in losses.items()},
                "l0": on.sum() / on.shape[0],
                "explained_variance": 1 - (target - out).pow(2).sum() / variance.clamp_min(1e-12),
                "dead_fraction": dead.float().mean(),
            }
        self.tokens += batch.shape[0]
        self.step += 1
        if self.step % cfg.log_every == 0 or (self.total_steps is not None and self.step == self.total_steps):
            self._record(self._last)

    @torch.no_grad()
    def _record(self, last: dict[str, Tensor]) -> None:
        losses = {name[5:]: value for name, value in last.items() if name.startswith("loss.")}
        record = {
            "step": self.step,
            "tokens": self.tokens,
            "lr": self._lr(),
            **{name: float(value) for name, value in losses.items()},
            **{name: float(last[name]) for name in ("l0", "explained_variance", "dead_fraction")},
            **({"input_scale": self.scale[0], "output_scale": self.scale[1]} if self.scale else {}),
        }
        self.log.append(record)
        if self.config.progress:
            name = self.dictionary.hook_name or self.dictionary.architecture
            losses_text = " ".join(f"{k} {v:.4g}" for k, v in record.items() if k in losses)
            say(
                f"{name}: step {record['step']} tokens {record['tokens']} {losses_text} l0 {record['l0']:.1f} "
                f"explained variance {record['explained_variance']:.3f} dead {record['dead_fraction']:.1%}"
            )


def activation_batches(
    data: Tensor | tuple[Tensor, Tensor] | Iterable, targets: Tensor | None, n_tokens: int | None
) -> tuple[Iterator[tuple[Tensor, Tensor | None]], int | None]:
    """(x, target) pairs and the run's length in tokens where it is known."""
    if isinstance(data, Tensor):
        n = data[..., 0].numel()
        if targets is not None and targets[..., 0].numel() != n:
            raise InputError(f"targets have {targets[..., 0].numel()} rows, activations {n}.")
        total = n if n_tokens is None else n_tokens
        repeats = math.ceil(total / n) if n else 0
        return itertools.repeat((data, targets), repeats), total
    if targets is not None:
        raise InputError("targets= goes with a tensor of activations; an iterator yields (x, target) pairs.")

    def pairs() -> Iterator[tuple[Tensor, Tensor | None]]:
        for item in data:
            if isinstance(item, Tensor):
                yield item, None
            elif isinstance(item, tuple | list) and len(item) == 2:
                yield item[0], item[1]
            else:
                raise InputError(
                    f"an activation iterator must yield tensors or (x, target) pairs, not {type(item).__name__}."
                )

    return pairs(), n_tokens


def training_config(config: TrainingConfig | None, options: dict) -> TrainingConfig:
    """`config`, or a `TrainingConfig` from keyword options (an unknown one is an error naming it)."""
    if config is not None:
        if options:
            raise InputError("Give either config= or training options as keywords, not both.")
        return config
    known = {f.name for f in dataclasses.fields(TrainingConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(
            f"Unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}."
        )
    return TrainingConfig(**options)


def train_dictionary(
    dictionary: Dictionary,
    data: Tensor | Iterable,
    *,
    targets: Tensor | None = None,
    config: TrainingConfig | None = None,
    **options,
) -> Dictionary:
    """Train `dictionary` in place on activations and return it (in eval mode, with `training_log`).

    Args:
        dictionary: from `make_dictionary(...)` (or one loaded, to train further).
        data: a tensor `[..., d_in]` of activations, or an iterator of such tensors (or of
            `(x, target)` pairs for a transcoder).
        targets: a transcoder's targets `[..., d_out]`, row-aligned with a tensor `data`.
        config: a `TrainingConfig`; or give its fields as keyword options (not both).
    """
    if not isinstance(dictionary, Dictionary):
        raise InputError(
            f"train_dictionary trains a Dictionary (see make_dictionary), not a {type(dictionary).__name__}."
        )
    config = training_config(config, options)
    if dictionary.kind != "sae" and isinstance(data, Tensor) and targets is None:
        raise InputError(f"a {dictionary.kind} needs targets= (activations of its output hook).")
    pairs, total = activation_batches(data, targets, config.n_tokens)
    trainer = DictionaryTrainer(dictionary, config, total)
    for x, target in pairs:
        if trainer.done:
            break
        trainer.push(x, target)
    return trainer.finish()
