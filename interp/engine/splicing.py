"""The engine's side of a splice: which model has dictionaries spliced in, and what the block asks of it.

`interp.dictionaries.splice` attaches a `Splicer` to a model for the length of its `with` block;
`PhiWeights.from_model` picks it up (`PhiWeights.splice`), and the one block body
(`interp.engine.forward.block`) hands it each block's edits, so every driver (the whole forward,
the batched patch engine, the key/value-cached generation) runs the spliced model. The splicer adds
its own edits (the dictionary's output where it writes, a read where a transcoder reads) around the
caller's, and takes the caller's edits at its dictionary points (`<hook>.dict.hook_acts`, ...) into
its own. The engine knows nothing of dictionaries: this protocol is all it sees.
"""

from __future__ import annotations

import weakref
from typing import Protocol, runtime_checkable

from interp.engine.edits import BlockEdits


@runtime_checkable
class Splicer(Protocol):
    """What a splice does to one block call's edits (short hook name -> functions, in order)."""

    def block_edits(self, layer: int, edits: BlockEdits) -> BlockEdits:
        """This block's edits with the splice's own added and its dictionary points taken in."""
        ...


_ACTIVE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> Splicer


def attach(model, splicer: Splicer) -> None:
    """Splice `splicer` into `model`'s engine runs (refused if one is attached already)."""
    if model in _ACTIVE:
        raise ValueError("the model already has dictionaries spliced in: leave that `with splice(...)` first")
    _ACTIVE[model] = splicer


def detach(model) -> None:
    """Take the model's splicer off (nothing if none)."""
    _ACTIVE.pop(model, None)


def active(model) -> Splicer | None:
    """The splicer attached to `model`, or None."""
    return _ACTIVE.get(model)
