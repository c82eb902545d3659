"""Hook names: validation with close-match suggestions, and a check that none are left behind.

TransformerLens accepts a mistyped name filter silently and returns an empty cache; here an
unknown name is an error that lists the closest real names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from interp.base.errors import HookNameError, HooksAttachedError
from interp.model.loading import HookedPhi


def hook_names(model: HookedPhi) -> list[str]:
    """Every hook point name the model has, in definition order."""
    return list(model.hook_dict.keys())


def validate_hook_names(model: HookedPhi, names: Iterable[str]) -> list[str]:
    """Return `names` unchanged if every one is a hook point; otherwise raise naming close matches."""
    known = model.hook_dict
    names = list(names)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            layer = re.match(r"blocks\.(\d+)\.", name)
            if layer and int(layer.group(1)) >= model.cfg.n_layers:
                hint = f" The model has layers 0..{model.cfg.n_layers - 1}." + hint
            raise HookNameError(
                f"Unknown hook name {name!r}.{hint} `interp.model.hooks.hook_names(model)` lists all "
                f"{len(known)} names (Phi has no resid_mid: attention and MLP run in parallel)."
            )
    return names


def match_hook_names(model: HookedPhi, pattern: str) -> list[str]:
    """Hook names matching a regular expression; an error if none does."""
    regex = re.compile(pattern)
    matched = [name for name in model.hook_dict if regex.search(name)]
    if not matched:
        raise HookNameError(f"No hook name matches the pattern {pattern!r}.")
    return matched


def refuse_user_hooks(model: HookedPhi, what: str) -> None:
    """The one policy for hooks a user left on the model: refuse, naming how to remove them.

    Methods compute from the weights (the functional forward) or add hooks of their own; a user's
    hook would be ignored by the first and mixed into the second, so either way the numbers would
    silently not mean what they say.
    """
    count = active_hook_count(model)
    if count:
        raise HooksAttachedError(
            f"The model has {count} hooks attached (an ablation or a user hook), and {what} would "
            "ignore them or mix them in. Leave the `with ablate(...)` / `model.hooks(...)` block, or "
            "call model.reset_hooks(), first."
        )


def active_hook_count(model: HookedPhi) -> int:
    """How many forward/backward hook functions are attached to the model's hook points (a splice's
    markers, `interp.dictionaries.splice`, are not user hooks)."""
    points = {id(hp): hp for hp in model.hook_dict.values()}  # aliases share a hook point
    return sum(
        not getattr(handle.user_hook, "interp_splice", False)
        for hp in points.values()
        for handle in (*hp.fwd_hooks, *hp.bwd_hooks)
    )


def hook_aliases(model: HookedPhi, name: str) -> list[str]:
    """Every name of the hook point `name` names (the bridge gives some points two names, e.g.
    `blocks.0.hook_resid_pre` and `blocks.0.hook_in`), `name` first; validated."""
    validate_hook_names(model, [name])
    point = model.hook_dict[name]
    return [name] + [other for other, hp in model.hook_dict.items() if hp is point and other != name]


_PATTERN_POINTS = ("attn.hook_attn_scores", "attn.hook_pattern")
_PER_HEAD_POINTS = ("attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_rot_q", "attn.hook_rot_k",
                    "attn.hook_z", "attn.hook_result",
                    # the split receiver inputs: each head's own copy of the residual it reads
                    "hook_q_input", "hook_k_input", "hook_v_input")  # fmt: skip


def pos_axis(name: str) -> int:
    """The position axis of a hook point's activation (batch first; dest_pos for scores and patterns)."""
    return 2 if name.endswith(_PATTERN_POINTS) else 1


def head_axis(name: str) -> int | None:
    """The head axis of a hook point's activation ([batch pos head d_head], [batch pos head d_model]
    for the split receiver inputs `hook_q_input` / `hook_k_input` / `hook_v_input`, or [batch head
    dest_pos src_pos]), or None where it has none."""
    if name.endswith(_PER_HEAD_POINTS):
        return 2
    if name.endswith(_PATTERN_POINTS):
        return 1
    return None
