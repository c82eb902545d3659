"""Activations computed on the fly through the model, and dictionaries trained from them.

`model_activations` runs the bridge's `run_with_cache` with a names filter of just the hooks needed
and `stop_at_layer` one past the last block they are in, so the forward stops there (a hook outside
the blocks, e.g. `ln_final.hook_normalized`, runs the whole model); block L's `hook_resid_pre` is
read as block L-1's `hook_resid_post`, the same tensor, so that block L does not run. Activations come back flattened
to one row per token position, optionally only the positions a mask keeps (padding left out).

`train_from_model` trains several dictionaries (SAEs on any hooks, transcoders on hook pairs) from
one forward per token batch: each dictionary has its own trainer and shuffling buffer, fed the rows
of its hook(s). The model may be bfloat16; dictionaries are float32.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

import einops
import torch
from jaxtyping import Bool, Int
from torch import Tensor

from interp.base.errors import InputError
from interp.dictionaries.base import Dictionary
from interp.dictionaries.training import DictionaryTrainer, TrainingConfig, training_config
from interp.model.hooks import validate_hook_names
from interp.model.loading import HookedPhi

_BLOCK = re.compile(r"^blocks\.(\d+)\.")
_RESID_PRE = re.compile(r"^blocks\.(\d+)\.hook_resid_pre$")


def read_point(name: str) -> str:
    """The hook that holds `name`'s activations and fires earliest: block L's `hook_resid_pre` is
    block L-1's `hook_resid_post` (the same tensor), so the forward can stop before block L."""
    match = _RESID_PRE.match(name)
    if match is None or int(match.group(1)) == 0:
        return name
    return f"blocks.{int(match.group(1)) - 1}.hook_resid_post"


def stop_layer(model: HookedPhi, names: Iterable[str]) -> int | None:
    """The `stop_at_layer` that still runs every block the hooks are in (None: the whole model)."""
    layers = []
    for name in names:
        match = _BLOCK.match(name)
        if match is None:
            return None
        layers.append(int(match.group(1)))
    stop = max(layers) + 1 if layers else None
    return None if stop is None or stop >= model.cfg.n_layers else stop


def model_activations(
    model: HookedPhi,
    tokens: Int[Tensor, "batch pos"],
    names: Sequence[str],
    *,
    mask: Bool[Tensor, "batch pos"] | None = None,
) -> dict[str, Tensor]:
    """Each named hook's activations on `tokens`, as `[token, width]` rows (the kept positions,
    batch-major); computed without gradients, stopping after the last block needed."""
    names = list(dict.fromkeys(validate_hook_names(model, names)))
    if mask is not None and mask.shape != tokens.shape:
        raise InputError(f"mask has shape {tuple(mask.shape)}; it must match tokens {tuple(tokens.shape)}.")
    device = model.cfg.device
    points = list(dict.fromkeys(read_point(name) for name in names))
    with torch.no_grad():
        _, cache = model.run_with_cache(
            tokens.to(device), names_filter=points, stop_at_layer=stop_layer(model, points)
        )
    out = {}
    for name in names:
        if read_point(name) not in cache:
            raise InputError(
                f"Hook {name!r} did not fire: the bridge gates it off (e.g. hook_mlp_in needs "
                "set_use_hook_mlp_in(True)); read an equivalent point such as blocks.L.ln1.hook_out."
            )
        act = cache[read_point(name)]
        if act.ndim != 3:
            raise InputError(
                f"Hook {name!r} has activations of shape {tuple(act.shape)}; dictionaries read hooks of "
                "shape [batch, pos, width] (for per-head hooks, use the attention output or hook_z flattened "
                "by hand)."
            )
        out[name] = (
            act[mask.to(act.device)] if mask is not None else einops.rearrange(act, "b p d -> (b p) d")
        )
    return out


def _hooks_of(dictionary: Dictionary) -> list[str]:
    if dictionary.hook_name is None:
        raise InputError(
            f"{dictionary!r} has no hook_name: say which hook it reads to train it on the model."
        )
    if dictionary.kind == "sae":
        return [dictionary.hook_name]
    if dictionary.hook_name_out is None:
        raise InputError(
            f"{dictionary!r} is a {dictionary.kind} without hook_name_out: say which hook it writes."
        )
    return [dictionary.hook_name, dictionary.hook_name_out]


def token_batches(
    tokens: Tensor | Iterable, model_batch: int
) -> tuple[Iterator[tuple[Tensor, Tensor | None]], int | None]:
    if isinstance(tokens, Tensor):
        if tokens.ndim != 2:
            raise InputError(f"tokens must be [batch, pos]; got shape {tuple(tokens.shape)}.")
        return ((chunk, None) for chunk in tokens.split(model_batch)), tokens.numel()

    def pairs() -> Iterator[tuple[Tensor, Tensor | None]]:
        for item in tokens:
            if isinstance(item, Tensor):
                yield item, None
            elif isinstance(item, tuple | list) and len(item) == 2:
                yield item[0], item[1].bool()
            else:
                raise InputError(
                    f"token batches must be tensors or (tokens, mask) pairs, not {type(item).__name__}."
                )

    return pairs(), None


class ModelTrainers:
    """Several dictionaries trained from one forward per token batch (`feed`), each with its own
    `DictionaryTrainer`; `state_dict` / `load_state_dict` hold all of them, for checkpoints."""

    def __init__(
        self,
        model: HookedPhi,
        dictionaries: Sequence[Dictionary],
        configs: Sequence[TrainingConfig],
        total_tokens: int | None = None,
    ):
        self.model, self.dictionaries = model, list(dictionaries)
        if not self.dictionaries:
            raise InputError("training on the model needs at least one dictionary.")
        if len(configs) != len(self.dictionaries):
            raise InputError(f"{len(configs)} training configs for {len(self.dictionaries)} dictionaries.")
        self.hooks = [_hooks_of(d) for d in self.dictionaries]
        self.names = list(dict.fromkeys(name for pair in self.hooks for name in pair))
        validate_hook_names(model, self.names)
        self.trainers = [
            DictionaryTrainer(d, cfg, cfg.n_tokens if cfg.n_tokens is not None else total_tokens)
            for d, cfg in zip(self.dictionaries, configs, strict=True)
        ]

    @property
    def done(self) -> bool:
        return all(trainer.done for trainer in self.trainers)

    def feed(self, tokens: Int[Tensor, "batch pos"], mask: Bool[Tensor, "batch pos"] | None = None) -> None:
        """One forward on `tokens` (up to the last hook needed); each unfinished trainer gets its rows."""
        if self.done:
            return
        acts = model_activations(self.model, tokens, self.names, mask=mask)
        for hooks, trainer in zip(self.hooks, self.trainers, strict=True):
            if not trainer.done:
                trainer.push(acts[hooks[0]], acts[hooks[1]] if len(hooks) == 2 else None)

    def state_dict(self) -> dict:
        return {"trainers": [trainer.state_dict() for trainer in self.trainers]}

    def load_state_dict(self, state: dict) -> None:
        if len(state["trainers"]) != len(self.trainers):
            raise InputError(
                f"the checkpoint holds {len(state['trainers'])} dictionaries, this run trains {len(self.trainers)}."
            )
        for trainer, trainer_state in zip(self.trainers, state["trainers"], strict=True):
            trainer.load_state_dict(trainer_state)

    def finish(self) -> list[Dictionary]:
        return [trainer.finish() for trainer in self.trainers]


def train_from_model(
    model: HookedPhi,
    tokens: Int[Tensor, "batch pos"] | Iterable,
    dictionaries: Sequence[Dictionary],
    *,
    config: TrainingConfig | Sequence[TrainingConfig] | None = None,
    model_batch: int = 32,
    **options,
) -> list[Dictionary]:
    """Train `dictionaries` (each with its hook names set) on activations streamed from `model`.

    Args:
        model: from `load_model` (any dtype; activations are cast to float32).
        tokens: a `[batch, pos]` tensor of token ids (run `model_batch` prompts per forward), or an
            iterator of token batches or of `(tokens, mask)` pairs whose mask keeps real positions.
        dictionaries: from `make_dictionary(..., hook_name=...)`; transcoders need `hook_name_out`.
        config: one `TrainingConfig` for all, one per dictionary, or its fields as keyword options.
            An iterator of batches has no known length: give `n_tokens` for the learning-rate decay.
    """
    dictionaries = list(dictionaries)
    if not dictionaries:
        raise InputError("train_from_model needs at least one dictionary.")
    if isinstance(config, Sequence) and options:
        raise InputError("Give either config= or training options as keywords, not both.")
    configs = (
        list(config)
        if isinstance(config, Sequence)
        else [training_config(config, options)] * len(dictionaries)
    )
    batches, n_positions = token_batches(tokens, model_batch)
    trainers = ModelTrainers(model, dictionaries, configs, n_positions)
    for batch_tokens, mask in batches:
        if trainers.done:
            break
        trainers.feed(batch_tokens, mask)
    return trainers.finish()
