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
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Literal

import torch
from jaxtyping import Bool, Float
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


@dataclass(frozen=True)
class Receiver:
    """One receiving input: a head's q, k or v, an MLP, or the logits (layer = n_layers)."""

    node: str
    layer: int
    head: int | None = None
    part: Part | None = None

    @property
    def name(self) -> str:
        return f"{self.node}<{self.part}>" if self.part else self.node


@dataclass(frozen=True)
class Graph:
    """The edges of a model with `n_layers` parallel blocks of `n_heads` heads (see the module docstring)."""

    n_layers: int
    n_heads: int

    def __post_init__(self) -> None:
        check_size("n_layers", self.n_layers)
        check_size("n_heads", self.n_heads)

    @classmethod
    def of(cls, n_layers: int, n_heads: int) -> Graph:
        """The graph of this shape, built once per process (its index tables take a while at Phi-2's size)."""
        return _graph(n_layers, n_heads)

    # --- nodes and receivers, in EAP-IG's index order ---

    @cached_property
    def senders(self) -> list[str]:
        names = ["input"]
        for layer in range(self.n_layers):
            names += [f"a{layer}.h{head}" for head in range(self.n_heads)] + [f"m{layer}"]
        return names

    @cached_property
    def sender_layers(self) -> Tensor:
        """Layer of each sender; -1 for the input."""
        layers = [-1]
        for layer in range(self.n_layers):
            layers += [layer] * (self.n_heads + 1)
        return torch.tensor(layers)

    @cached_property
    def receivers(self) -> list[Receiver]:
        out = []
        for layer in range(self.n_layers):
            for part in PARTS:
                out += [Receiver(f"a{layer}.h{head}", layer, head, part) for head in range(self.n_heads)]
            out.append(Receiver(f"m{layer}", layer))
        out.append(Receiver("logits", self.n_layers))
        return out

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
        """Backward indices of layer `layer`'s receivers (q, k, v of every head, then the MLP)."""
        width = 3 * self.n_heads + 1
        return slice(layer * width, (layer + 1) * width)

    def senders_before(self, layer: int) -> int:
        """How many senders write before the receivers of `layer` read (input and earlier layers)."""
        return 1 + layer * (self.n_heads + 1)

    # --- edges ---

    @cached_property
    def mask(self) -> Bool[Tensor, "sender receiver"]:
        """True where an edge exists: the sender's layer is before the receiver's."""
        receiver_layers = torch.tensor([r.layer for r in self.receivers])
        return self.sender_layers[:, None] < receiver_layers[None, :]

    @cached_property
    def edge_index(self) -> Tensor:
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

    def from_matrix(self, matrix: Tensor) -> Tensor:
        """The edge vector of a [n_forward, n_backward] matrix, in `edge_names` order."""
        return matrix[self.mask]

    def config(self) -> dict:
        """The graph's description in EAP-IG's `cfg` layout."""
        return {"n_layers": self.n_layers, "n_heads": self.n_heads, "parallel_attn_mlp": True}


@cache
def _graph(n_layers: int, n_heads: int) -> Graph:
    return Graph(n_layers, n_heads)


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
