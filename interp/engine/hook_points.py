"""The engine's edit points: every TransformerLens hook name the functional Phi forward can edit, with
its dimensions (TransformerLens's layouts and dimension names), in the order a block computes them.

This one schema is what the engine validates edit points against (`interp.engine.edits`), what says
where an activation's position axis is (counted from the end, so a leading variant axis changes
nothing), and what the README's hook table is checked against (tests/test_forward.py).

Phi specifics: one LayerNorm feeds attention and MLP (`ln1.*`), attention and MLP run in parallel (no
`resid_mid`). The split receiver inputs (`hook_q_input`, `hook_k_input`, `hook_v_input` per head, and
`hook_mlp_in`) are the residual stream as each receiver reads it, before its LayerNorm, as
TransformerLens's split-qkv option and EAP-IG name them: editing one gives that receiver its own
LayerNorm of its own input, and nothing else sees the change.

While dictionaries are spliced into a model (`interp.dictionaries.splice`), the schema also holds
their points, `<hook>.dict.hook_acts` / `.hook_recons` / `.hook_error` (`SPLICED`, full name ->
dimensions): edits, `dims` and `check_points` accept them, and `all_points` lists each after the
hook it belongs to. The engine's block runs them through the splice attached to the weights
(`PhiWeights.splice`).
"""

from __future__ import annotations

# per block, after "blocks.{layer}.", in the order the block computes them
BLOCK_POINTS: dict[str, str] = {
    "hook_resid_pre": "batch pos d_model",
    "hook_q_input": "batch pos head d_model",
    "hook_k_input": "batch pos head d_model",
    "hook_v_input": "batch pos head d_model",
    "ln1.hook_scale": "batch pos 1",
    "ln1.hook_normalized": "batch pos d_model",
    "ln1.hook_out": "batch pos d_model",
    "attn.hook_q": "batch pos head d_head",
    "attn.hook_k": "batch pos head d_head",
    "attn.hook_v": "batch pos head d_head",
    "attn.hook_rot_q": "batch pos head d_head",
    "attn.hook_rot_k": "batch pos head d_head",
    "attn.hook_attn_scores": "batch head dest_pos src_pos",
    "attn.hook_pattern": "batch head dest_pos src_pos",
    "attn.hook_z": "batch pos head d_head",
    "attn.hook_result": "batch pos head d_model",
    "hook_attn_out": "batch pos d_model",
    "hook_mlp_in": "batch pos d_model",
    "mlp.hook_pre": "batch pos d_mlp",
    "mlp.hook_post": "batch pos d_mlp",
    "hook_mlp_out": "batch pos d_model",
    "hook_resid_post": "batch pos d_model",
}

# outside the blocks, in forward order (around the blocks: the embedding first, the rest after)
MODEL_POINTS: dict[str, str] = {
    "hook_embed": "batch pos d_model",
    "ln_final.hook_out": "batch pos d_model",
    "hook_unembed": "batch pos d_vocab",
}

SPLIT_INPUTS = frozenset({"hook_q_input", "hook_k_input", "hook_v_input", "hook_mlp_in"})
LN_INSIDE = frozenset({"ln1.hook_scale", "ln1.hook_normalized"})
ATTENTION_INSIDE = frozenset(
    {
        "attn.hook_q",
        "attn.hook_k",
        "attn.hook_v",
        "attn.hook_rot_q",
        "attn.hook_rot_k",
        "attn.hook_attn_scores",
        "attn.hook_pattern",
    }
)
MLP_INSIDE = frozenset({"mlp.hook_pre", "mlp.hook_post"})

# the points of the dictionaries spliced in now (full name -> dimensions); see `add_spliced`
SPLICED: dict[str, str] = {}
DICT_MARK = ".dict."


def add_spliced(points: dict[str, str]) -> None:
    """Learn a splice's points (full name -> dimensions); refused while another splice's are known."""
    if SPLICED:
        raise ValueError(
            f"dictionary points are already spliced in ({', '.join(sorted(SPLICED)[:3])}, ...): leave that "
            "`with splice(...)` block first (one splice at a time)"
        )
    SPLICED.update(points)


def remove_spliced() -> None:
    """Forget the spliced points (on leaving the splice)."""
    SPLICED.clear()


def is_dictionary_point(name: str) -> bool:
    """Whether `name` names a dictionary point (`<hook>.dict.<point>`), spliced or not."""
    return DICT_MARK in name


def split_name(name: str) -> tuple[int | None, str]:
    """(layer, point) of a full hook name: `blocks.3.attn.hook_z` -> (3, "attn.hook_z"),
    `hook_embed` -> (None, "hook_embed"). No validation (see `check_points`)."""
    if name.startswith("blocks."):
        _, layer, point = name.split(".", 2)
        if layer.isdigit():
            return int(layer), point
    return None, name


def dims(name: str) -> tuple[str, ...]:
    """The dimension names of a hook point's activation (full name or a block's short name)."""
    if name in SPLICED:
        return tuple(SPLICED[name].split())
    _, point = split_name(name)
    spec = BLOCK_POINTS.get(point) or MODEL_POINTS.get(point)
    if spec is None:
        raise KeyError(f"{name!r} is not an edit point of the engine")
    return tuple(spec.split())


def pos_axis_from_end(name: str) -> int:
    """The (negative) axis of `name`'s activation that holds positions: `dest_pos` for scores and
    patterns. Counted from the end, it holds with any number of leading (variant) axes."""
    names = dims(name)
    axis = names.index("dest_pos") if "dest_pos" in names else names.index("pos")
    return axis - len(names)


def all_points(n_layers: int) -> list[str]:
    """Every edit point of a model with `n_layers` blocks, by TransformerLens name, in forward order
    (a spliced dictionary's points after the hook they belong to)."""
    inner = [f"blocks.{layer}.{point}" for layer in range(n_layers) for point in BLOCK_POINTS]
    return with_spliced(["hook_embed", *inner, "ln_final.hook_out", "hook_unembed"])


def with_spliced(names: list[str]) -> list[str]:
    """`names` with each spliced dictionary point inserted after the hook it belongs to (at the end
    where that hook is not listed)."""
    if not SPLICED:
        return names
    after: dict[str, list[str]] = {}
    for point in SPLICED:
        after.setdefault(point.split(DICT_MARK)[0], []).append(point)
    placed = [extra for name in names for extra in (name, *after.pop(name, ()))]
    return placed + [point for points in after.values() for point in points]


def check_points(names, n_layers: int, offered=None) -> None:
    """Raise `ValueError` naming every name that is not an edit point (of `offered` short names, if
    given) of a model with `n_layers` blocks, and what is allowed."""
    allowed = BLOCK_POINTS.keys() if offered is None else offered
    bad = []
    for name in names:
        if name in SPLICED:
            continue
        layer, point = split_name(name)
        ok = point in MODEL_POINTS if layer is None else (0 <= layer < n_layers and point in allowed)
        if not ok:
            bad.append(name)
    if bad:
        spliced = f"; spliced dictionary points: {', '.join(SPLICED)}" if SPLICED else ""
        unspliced = [n for n in bad if is_dictionary_point(n) and n not in SPLICED]
        why = f" ({', '.join(unspliced)}: no dictionary is spliced in there)" if unspliced else ""
        raise ValueError(
            f"not edit points of this model: {sorted(bad)}{why}; edit points are blocks.<0..{n_layers - 1}>."
            f"<{'|'.join(allowed)}> and {', '.join(MODEL_POINTS)}{spliced}"
        )
