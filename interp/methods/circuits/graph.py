"""The edge graph of a Phi model: which component reads what from which, for parallel blocks.

Nodes (senders, in the order their outputs enter the residual stream):

- `input`: the token embedding (Phi has no positional embedding; rotary acts inside attention);
- `a{L}.h{H}`: head H of layer L; its output is `z_H @ W_O[H]` (the attention output bias belongs
  to no head: it is a constant of the residual stream in every run);
- `m{L}`: the MLP of layer L, its bias included.

Receivers: every head reads three inputs (`q`, `k`, `v`), every MLP one, and `logits` one. A receiver
of layer L reads `input` and every node of the layers before L. **Phi's blocks are parallel**: `m{L}`
reads the same residual stream as the heads of layer L, so it does not read `a{L}.*` (unlike a GPT-2
block), and there is no `resid_mid`.

Edge names follow EAP-IG and MIB: `"a0.h3->a2.h1<v>"`, `"m1->logits"`, `"input->m0"`. Scores live in
a dense `[n_forward, n_backward]` matrix laid out as EAP-IG's (forward index: input, then per layer the
heads and the MLP; backward index: per layer the q, k and v inputs of every head, then the MLP; last the
logits), with a mask of the edges that exist, so circuits move between this workbench and EAP-IG/MIB.

Edge count: sum over layers l < L of (3H + 1)(1 + l(H + 1)), plus 1 + L(H + 1) into the logits:
Phi-2 (L = H = 32) has 1,591,857 edges.

**Feature nodes** are one more node type (`FeatureSite`): with dictionaries spliced in with their error
terms (`interp.dictionaries.splice`), the chosen latents of the dictionary writing a hook are nodes
`blocks.1.hook_resid_post[12]` (the latent summed over positions, as Marks et al. 2024), and its error
term `blocks.1.hook_resid_post[error]`; each is a sender and a receiver (one input, no parts). A graph
holds any feature sites, with or without the heads and MLPs (`components`): `Graph(L, H)` is the head
graph above, `Graph(L, H, sites, components=False)` the feature graph of Marks et al., and both
together one graph of heads, MLPs and features. Nodes keep the forward's order (a site's nodes where
its hook is computed); an edge exists where the sender's output reaches the receiver's input without
crossing another node: a dictionary's point carries everything that passes it (its latents and error
are its only way through, kept in the graph or not), a head's or MLP's output is only reached through
that node, and attention and MLP of one layer stay parallel. A layer's MLP is no node where a
dictionary writes its output (the dictionary's nodes stand for it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.base.errors import InputError

Part = Literal["q", "k", "v"]
PARTS: tuple[Part, ...] = ("q", "k", "v")


def expected_edge_count(n_layers: int, n_heads: int) -> int:
    """The closed form: sum_{l<L} (3H+1)(1 + l(H+1)) + 1 + L(H+1), in O(1) for any size (a file's claimed
    size is checked against what it holds before any table of that size is built)."""
    L, H = n_layers, n_heads
    into_blocks = (3 * H + 1) * (L + (H + 1) * L * (L - 1) // 2)
    return into_blocks + 1 + L * (H + 1)


def check_size(name: str, value: object) -> int:
    """`value` itself if it is an integer of 1 or more (a graph's n_layers or n_heads), else InputError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name}={value!r} is not allowed; use an integer of 1 or more.")
    return value


# where a point sits in a block, for ordering nodes: (stage, branch); attention and MLP are parallel
# branches of one block, so a write in one branch reaches a read of the same layer in the same branch only
_STAGES: dict[str, tuple[int, str | None]] = {
    "hook_resid_pre": (0, None),
    "ln1.hook_scale": (1, None),
    "ln1.hook_normalized": (2, None),
    "ln1.hook_out": (3, None),
    # 4: the heads and the MLP read (stage 4) and write (stage 5)
    "hook_attn_out": (6, "attn"),
    "hook_mlp_out": (6, "mlp"),
    "hook_resid_post": (7, None),
}
_READ_COMPONENTS, _WRITE_COMPONENTS, _BRANCH_OUT = 4, 5, 6


def _time(layer: int, stage: int, side: Literal["read", "write"]) -> int:
    """A point's place in the forward: reads at a point come before writes there."""
    return (layer * 8 + stage) * 2 + (side == "write")


@dataclass(frozen=True)
class FeatureSite:
    """The feature nodes of one spliced dictionary: latents `latents` of the dictionary that writes
    `writes` (reading `reads`; the same hook for an SAE) and, with `error`, its error term.

    The names are the engine's (`blocks.1.hook_mlp_out`, `blocks.1.ln1.hook_normalized`); the latents
    a sorted tuple of distinct indices (the ones chosen as nodes: the other latents still carry what
    passes the point, as fixed values, so no edge goes through them)."""

    writes: str
    reads: str
    latents: tuple[int, ...]
    error: bool = True

    def __post_init__(self) -> None:
        for field_name in ("writes", "reads"):
            name = getattr(self, field_name)
            point = _point(name)
            if point not in _STAGES:
                raise InputError(
                    f"{field_name}={name!r} is not allowed for a feature site; use blocks.<layer>.<point> "
                    f"with point one of {', '.join(_STAGES)}."
                )
        if self.layer != _layer(self.reads):
            raise InputError(f"a feature site reads and writes one block: {self.reads!r} -> {self.writes!r}")
        if _STAGES[_point(self.reads)][0] > _STAGES[_point(self.writes)][0]:
            raise InputError(f"a feature site reads before it writes: {self.reads!r} -> {self.writes!r}")
        latents = self.latents
        if (
            not isinstance(latents, tuple)
            or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in latents)
            or list(latents) != sorted(set(latents))
        ):
            raise InputError(
                f"latents={latents!r} is not allowed; use a tuple of distinct latent indices 0 or more, in order."
            )
        if not isinstance(self.error, bool):
            raise InputError(f"error={self.error!r} is not allowed; use True or False.")

    @property
    def layer(self) -> int:
        return _layer(self.writes)

    @property
    def node_names(self) -> list[str]:
        """`<writes>[<latent>]` per latent, then `<writes>[error]` with the error term."""
        return [f"{self.writes}[{i}]" for i in self.latents] + (
            [f"{self.writes}[error]"] if self.error else []
        )

    def stage(self, side: Literal["read", "write"]) -> tuple[int, str | None]:
        return _STAGES[_point(self.reads if side == "read" else self.writes)]

    def config(self) -> dict:
        return {
            "writes": self.writes,
            "reads": self.reads,
            "latents": list(self.latents),
            "error": self.error,
        }


def site_order(site: FeatureSite) -> tuple[int, int, str]:
    """Where a site writes in the forward: (layer, stage, branch), the order of a graph's sites."""
    stage, branch = site.stage("write")
    return site.layer, stage, branch or ""


def _point(name: object) -> str | None:
    parts = name.split(".", 2) if isinstance(name, str) else []
    return parts[2] if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit() else None


def _layer(name: str) -> int:
    return int(name.split(".")[1])


@dataclass(frozen=True)
class Node:
    """One sender: the input, a head, an MLP, a dictionary latent or a dictionary's error term."""

    name: str
    kind: Literal["input", "head", "mlp", "latent", "error"]
    layer: int  # -1 for the input
    head: int | None = None
    site: FeatureSite | None = None
    latent: int | None = None


@dataclass(frozen=True)
class Receiver:
    """One receiving input: a head's q, k or v, an MLP, a feature node, or the logits (layer = n_layers)."""

    node: str
    layer: int
    head: int | None = None
    part: Part | None = None
    site: FeatureSite | None = None
    latent: int | None = None  # None with a site: its error term

    @property
    def name(self) -> str:
        return f"{self.node}<{self.part}>" if self.part else self.node


@dataclass(frozen=True)
class Graph:
    """The edges of a model with `n_layers` parallel blocks of `n_heads` heads, its heads and MLPs as
    nodes (`components`) and the feature nodes of `features` (see the module docstring)."""

    n_layers: int
    n_heads: int
    features: tuple[FeatureSite, ...] = ()
    components: bool = True

    def __post_init__(self) -> None:
        check_size("n_layers", self.n_layers)
        check_size("n_heads", self.n_heads)
        if not isinstance(self.features, tuple) or not all(isinstance(f, FeatureSite) for f in self.features):
            raise InputError("features must be a tuple of FeatureSite")
        if not isinstance(self.components, bool):
            raise InputError(f"components={self.components!r} is not allowed; use True or False.")
        # one graph per set of sites, whatever order they are given in: kept in forward order
        object.__setattr__(self, "features", tuple(sorted(self.features, key=site_order)))
        writes = [f.writes for f in self.features]
        if len(set(writes)) != len(writes):
            raise InputError(f"two feature sites write one hook: {writes}; one dictionary per hook written.")
        for site in self.features:
            if site.layer >= self.n_layers:
                raise InputError(f"{site.writes!r} is not in a model of {self.n_layers} layers")
        if not self.components and not any(f.node_names for f in self.features):
            raise InputError("a graph without heads and MLPs needs feature nodes (features=...)")

    @classmethod
    def of(
        cls, n_layers: int, n_heads: int, features: tuple[FeatureSite, ...] = (), components: bool = True
    ) -> Graph:
        """The graph of this shape, built once per process (its index tables take a while at Phi-2's size)."""
        return _graph(n_layers, n_heads, tuple(sorted(features, key=site_order)), components)

    @classmethod
    def from_config(cls, cfg: dict) -> Graph:
        """The graph `config()` describes (feature sites under `features`; heads and MLPs unless
        `components` is false)."""
        sites = cfg.get("features", [])
        if not isinstance(sites, list) or not all(isinstance(s, dict) for s in sites):
            raise InputError(f"cfg.features={sites!r} is not allowed; use a list of feature sites.")
        features = []
        for site in sites:
            unknown = set(site) - {"writes", "reads", "latents", "error"}
            latents = site.get("latents")
            if unknown or not isinstance(latents, list):
                raise InputError(
                    f"cfg.features entry {site!r} is not allowed; use writes, reads, latents (a list), error."
                )
            features.append(
                FeatureSite(site.get("writes"), site.get("reads"), tuple(latents), site.get("error", True))
            )
        components = cfg.get("components", True)
        return cls.of(check_size("n_layers", cfg.get("n_layers")), check_size("n_heads", cfg.get("n_heads")),
                      tuple(features), components)  # fmt: skip

    def replaces_mlp(self, layer: int) -> bool:
        """Whether a feature site writes layer `layer`'s MLP output (then the MLP is no node)."""
        return any(f.writes == f"blocks.{layer}.hook_mlp_out" for f in self.features)

    @property
    def sites(self) -> list[FeatureSite]:
        """The feature sites in forward order."""
        return list(self.features)

    # --- nodes and receivers, in the forward's order (EAP-IG's for the head graph) ---

    @cached_property
    def _sender_table(self) -> list[tuple[Node, int, str | None]]:
        """(node, write time, branch) of every sender, in forward order."""
        table: list[tuple[Node, int, str | None]] = [(Node("input", "input", -1), -1, None)]
        for layer in range(self.n_layers):
            here: list[tuple[tuple, Node, int, str | None]] = []
            if self.components:
                t = _time(layer, _WRITE_COMPONENTS, "write")
                here += [((_WRITE_COMPONENTS, 0, h), Node(f"a{layer}.h{h}", "head", layer, h), t, "attn")
                         for h in range(self.n_heads)]  # fmt: skip
                if not self.replaces_mlp(layer):
                    here.append(((_WRITE_COMPONENTS, 1, 0), Node(f"m{layer}", "mlp", layer), t, "mlp"))
            for site in self.sites:
                if site.layer != layer:
                    continue
                stage, branch = site.stage("write")
                key = (stage, branch == "mlp", 0)
                t = _time(layer, stage, "write")
                names = site.node_names
                for name, latent in zip(names, [*site.latents, None], strict=False):
                    kind = "latent" if latent is not None else "error"
                    here.append((key, Node(name, kind, layer, site=site, latent=latent), t, branch))
            here.sort(key=lambda item: item[0])  # stable: a site's latents in order, then its error
            table += [(node, t, branch) for _, node, t, branch in here]
        return table

    @cached_property
    def nodes(self) -> list[Node]:
        """Every sender as a `Node`, in `senders` order."""
        return [node for node, _, _ in self._sender_table]

    @cached_property
    def senders(self) -> list[str]:
        return [node.name for node in self.nodes]

    @cached_property
    def sender_layers(self) -> Int[Tensor, " sender"]:
        """Layer of each sender; -1 for the input."""
        return torch.tensor([node.layer for node in self.nodes])

    @cached_property
    def _receiver_table(self) -> list[tuple[Receiver, int, str | None]]:
        """(receiver, read time, branch) of every receiver, in forward order; the logits last."""
        table = []
        for layer in range(self.n_layers):
            here: list[tuple[tuple, Receiver, int, str | None]] = []
            if self.components:
                t = _time(layer, _READ_COMPONENTS, "read")
                for i, part in enumerate(PARTS):
                    here += [((_READ_COMPONENTS, i, h), Receiver(f"a{layer}.h{h}", layer, h, part), t, None)
                             for h in range(self.n_heads)]  # fmt: skip
                if not self.replaces_mlp(layer):
                    here.append(((_READ_COMPONENTS, 3, 0), Receiver(f"m{layer}", layer), t, None))
            for site in self.sites:
                if site.layer != layer:
                    continue
                stage, branch = site.stage("read")
                t = _time(layer, stage, "read")
                order = (stage, 4 + (branch == "mlp"), _STAGES[_point(site.writes)][0])
                for name, latent in zip(site.node_names, [*site.latents, None], strict=False):
                    receiver = Receiver(name, layer, site=site, latent=latent)
                    here.append((order, receiver, t, branch))
            here.sort(key=lambda item: item[0])
            table += [(receiver, t, branch) for _, receiver, t, branch in here]
        table.append((Receiver("logits", self.n_layers), _time(self.n_layers, 0, "read"), None))
        return table

    @cached_property
    def receivers(self) -> list[Receiver]:
        return [receiver for receiver, _, _ in self._receiver_table]

    @property
    def n_forward(self) -> int:
        return len(self.senders)

    @property
    def n_backward(self) -> int:
        return len(self.receivers)

    def sender_index(self, name: str) -> int:
        return self._sender_index[name]

    def receiver_index(self, name: str) -> int:
        return self._receiver_index[name]

    @cached_property
    def _sender_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.senders)}

    @cached_property
    def _receiver_index(self) -> dict[str, int]:
        return {r.name: i for i, r in enumerate(self.receivers)}

    def block_receivers(self, layer: int) -> slice:
        """Backward indices of layer `layer`'s receivers (q, k, v of every head, then the MLP): head
        graphs only."""
        self._head_graph_only("block_receivers")
        width = 3 * self.n_heads + 1
        return slice(layer * width, (layer + 1) * width)

    def senders_before(self, layer: int) -> int:
        """How many senders write before the receivers of `layer` read (input and earlier layers): head
        graphs only."""
        self._head_graph_only("senders_before")
        return 1 + layer * (self.n_heads + 1)

    def _head_graph_only(self, what: str) -> None:
        if self.features or not self.components:
            raise InputError(f"{what} is defined for the head graph (no feature nodes), not {self}")

    # --- edges ---

    @cached_property
    def mask(self) -> Bool[Tensor, "sender receiver"]:
        """True where an edge exists: the sender's output reaches the receiver's input without crossing
        another node (the module docstring)."""
        s_time = torch.tensor([t for _, t, _ in self._sender_table])
        r_time = torch.tensor([t for _, t, _ in self._receiver_table])
        s_layer, r_layer = self.sender_layers, torch.tensor([r.layer for r in self.receivers])
        codes = {None: 0, "attn": 1, "mlp": 2}
        s_branch = torch.tensor([codes[b] for _, _, b in self._sender_table])
        r_branch = torch.tensor([codes[b] for _, _, b in self._receiver_table])
        mask = s_time[:, None] < r_time[None, :]
        same_layer = s_layer[:, None] == r_layer[None, :]
        crossed = (
            (s_branch[:, None] != 0) & (r_branch[None, :] != 0) & (s_branch[:, None] != r_branch[None, :])
        )
        mask &= ~(same_layer & crossed)  # attention and MLP of one layer are parallel
        if self.components:  # attention's output is reached only through the layer's heads
            r_out = torch.tensor(
                [t == _time(r.layer, _BRANCH_OUT, "read") and b == "attn" for r, t, b in self._receiver_table]
            )
            from_branch = same_layer & (s_branch[:, None] == r_branch[None, :])
            mask &= ~r_out[None, :] | from_branch
        for site in self.sites:  # a dictionary's point: crossed only through its nodes
            stage, branch = site.stage("write")
            t = _time(site.layer, stage, "read")  # the point, before the site's own write
            before, after = s_time[:, None] < t, r_time[None, :] > t
            if branch is None and stage in (0, 7):  # the residual stream itself
                mask &= ~(before & after)
            elif branch is None:  # the LayerNorm output: what the layer's heads and MLP read
                reads_it = (r_layer == site.layer) & (r_time <= _time(site.layer, _BRANCH_OUT, "read"))
                mask &= ~(before & (after & reads_it[None, :]))
            else:  # one branch's output
                in_branch = (s_layer == site.layer) & (s_branch == codes[branch])
                mask &= ~(in_branch[:, None] & before & after)
        return mask

    @cached_property
    def edge_index(self) -> Int[Tensor, "edge 2"]:
        """(sender, receiver) index of every edge, in row-major order of the score matrix: [edge, 2]."""
        return torch.nonzero(self.mask)

    @property
    def n_edges(self) -> int:
        return int(self.mask.sum())

    @cached_property
    def edge_names(self) -> list[str]:
        return [f"{self.senders[s]}->{self.receivers[r].name}" for s, r in self.edge_index.tolist()]

    @cached_property
    def edge_senders(self) -> list[str]:
        """The sender node of every edge, in `edge_names` order."""
        return [self.senders[s] for s in self.edge_index[:, 0].tolist()]

    @cached_property
    def edge_receiver_nodes(self) -> list[str]:
        """The receiving node of every edge (`a2.h1` for `a2.h1<q>`), in `edge_names` order."""
        return [self.receivers[r].node for r in self.edge_index[:, 1].tolist()]

    @cached_property
    def edge_sender_layers(self) -> list[int]:
        """The layer of every edge's sender (-1 for the input), in `edge_names` order."""
        return self.sender_layers[self.edge_index[:, 0]].tolist()

    def edge_position(self, name: str) -> int:
        """The position of an edge (by name) in `edge_names` and in every edge vector."""
        try:
            return self._edge_position[name]
        except KeyError:
            raise InputError(f"{name!r} is not an edge of this graph (e.g. {self.edge_names[0]!r})") from None

    @cached_property
    def _edge_position(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.edge_names)}

    def to_matrix(
        self, values: Float[Tensor, " edge"], fill: float = 0.0
    ) -> Float[Tensor, "sender receiver"]:
        """An edge vector as the [n_forward, n_backward] matrix (non-edges filled with `fill`)."""
        matrix = torch.full((self.n_forward, self.n_backward), fill, dtype=values.dtype)
        matrix[self.mask] = values
        return matrix

    def from_matrix(self, matrix: Float[Tensor, "sender receiver"]) -> Float[Tensor, " edge"]:
        """The edge vector of a [n_forward, n_backward] matrix, in `edge_names` order."""
        return matrix[self.mask]

    def config(self) -> dict:
        """The graph's description in EAP-IG's `cfg` layout; a graph with feature nodes adds `features`
        (each site's `writes`, `reads`, `latents`, `error`) and `components` (heads and MLPs as nodes)."""
        cfg = {"n_layers": self.n_layers, "n_heads": self.n_heads, "parallel_attn_mlp": True}
        if self.features or not self.components:
            cfg |= {"features": [site.config() for site in self.sites], "components": self.components}
        return cfg


@cache
def _graph(n_layers: int, n_heads: int, features: tuple[FeatureSite, ...], components: bool) -> Graph:
    return Graph(n_layers, n_heads, features, components)


def check_mask(graph: Graph, circuit: object) -> None:
    """InputError unless `circuit` is a bool mask over the graph's edges."""
    if not isinstance(circuit, Tensor) or circuit.dtype != torch.bool or circuit.shape != (graph.n_edges,):
        got = (
            f"{circuit.dtype} {tuple(circuit.shape)}"
            if isinstance(circuit, Tensor)
            else type(circuit).__name__
        )
        raise InputError(f"circuit must be a bool mask of {graph.n_edges} edges (this graph's), got {got}")


@dataclass(frozen=True, eq=False)
class Circuit:
    """Some of a graph's edges: `mask[e]` says whether `graph.edge_names[e]` is in the circuit.

    `len(circuit)` is the number of edges in the circuit; iterating gives their names in the graph's
    order, and `name in circuit` asks for one edge. Wherever a circuit is taken, a bool mask over the
    graph's edges is taken too.
    """

    graph: Graph
    mask: Bool[Tensor, " edge"]

    def __post_init__(self) -> None:
        check_mask(self.graph, self.mask)

    @classmethod
    def of(cls, graph: Graph, circuit: Circuit | Bool[Tensor, " edge"]) -> Circuit:
        """`circuit` itself (if over `graph`), or the circuit of a bool mask over `graph`'s edges."""
        if isinstance(circuit, Circuit):
            if circuit.graph != graph:
                raise InputError(f"the circuit is over a {circuit.graph} but the scores are over a {graph}")
            return circuit
        return cls(graph, circuit)

    def __len__(self) -> int:
        return int(self.mask.sum())

    @property
    def edges(self) -> list[str]:
        """The names of the circuit's edges, in the graph's order."""
        names = self.graph.edge_names
        return [names[i] for i in self.mask.nonzero().flatten().tolist()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.edges)

    def __contains__(self, name: object) -> bool:
        position = self.graph._edge_position.get(name) if isinstance(name, str) else None
        return position is not None and bool(self.mask[position])

    @property
    def nodes(self) -> set[str]:
        """The nodes the circuit's edges join."""
        senders, receivers = self.graph.edge_senders, self.graph.edge_receiver_nodes
        return {n for i in self.mask.nonzero().flatten().tolist() for n in (senders[i], receivers[i])}

    def __repr__(self) -> str:
        shown = ", ".join(self.edges[:4]) + (", ..." if len(self) > 4 else "")
        return f"Circuit({len(self)} of {self.graph.n_edges} edges: {shown})"
