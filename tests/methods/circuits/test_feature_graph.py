"""Feature nodes in the edge graph (interp.methods.circuits.graph): one graph of heads, MLPs, dictionary
latents and error terms, in the forward's order, with edges only where nothing else stands between."""

from __future__ import annotations

import pytest

from interp.base.errors import InputError
from interp.methods.circuits.graph import FeatureSite, Graph

RESID0 = FeatureSite("blocks.0.hook_resid_post", "blocks.0.hook_resid_post", (1, 3))
TRANSCODER1 = FeatureSite("blocks.1.hook_mlp_out", "blocks.1.ln1.hook_normalized", (0,))
ATTN1 = FeatureSite("blocks.1.hook_attn_out", "blocks.1.hook_attn_out", (2,))


def mixed() -> Graph:
    return Graph(2, 2, (ATTN1, RESID0, TRANSCODER1))


class TestMixedGraph:
    def test_nodes_are_in_the_forwards_order(self):
        assert mixed().senders == [
            "input", "a0.h0", "a0.h1", "m0",
            "blocks.0.hook_resid_post[1]", "blocks.0.hook_resid_post[3]", "blocks.0.hook_resid_post[error]",
            "a1.h0", "a1.h1", "blocks.1.hook_attn_out[2]", "blocks.1.hook_attn_out[error]",
            "blocks.1.hook_mlp_out[0]", "blocks.1.hook_mlp_out[error]",
        ]  # fmt: skip
        assert "m1" not in mixed().senders  # the transcoder stands for layer 1's MLP
        assert mixed().receivers[-1].name == "logits"

    def test_a_residual_site_carries_everything_that_passes_it(self):
        names = set(mixed().edge_names)
        assert (
            "a0.h0->blocks.0.hook_resid_post[1]" in names and "m0->blocks.0.hook_resid_post[error]" in names
        )
        assert not any(n.startswith(("input->a1", "a0.h0->a1", "m0->logits", "input->logits")) for n in names)
        assert "blocks.0.hook_resid_post[3]->a1.h1<k>" in names
        assert "blocks.0.hook_resid_post[error]->blocks.1.hook_mlp_out[0]" in names

    def test_branches_stay_parallel_and_are_reached_through_their_nodes(self):
        names = set(mixed().edge_names)
        assert "a1.h0->blocks.1.hook_attn_out[2]" in names
        assert "a1.h0->logits" not in names  # through the attn_out dictionary only
        assert "blocks.0.hook_resid_post[1]->blocks.1.hook_attn_out[2]" not in names  # through the heads
        assert "a1.h0->blocks.1.hook_mlp_out[0]" not in names  # attention and MLP are parallel
        assert (
            "blocks.1.hook_mlp_out[0]->logits" in names and "blocks.1.hook_attn_out[error]->logits" in names
        )

    def test_without_components_the_features_are_the_graph(self):
        graph = Graph(2, 2, (RESID0, TRANSCODER1, ATTN1), components=False)
        assert graph.senders[0] == "input" and not any(n.startswith(("a", "m")) for n in graph.senders[1:])
        names = set(graph.edge_names)
        assert "blocks.0.hook_resid_post[1]->blocks.1.hook_attn_out[2]" in names  # through heads not in it
        assert (
            "input->blocks.0.hook_resid_post[3]" in names and "input->blocks.1.hook_mlp_out[0]" not in names
        )

    def test_the_config_round_trips(self):
        for graph in (mixed(), Graph(2, 2, (RESID0,), components=False), Graph(3, 2)):
            assert Graph.from_config(graph.config()) == graph
            assert Graph.from_config(graph.config()).edge_names == graph.edge_names
        assert "features" not in Graph(3, 2).config()  # the head graph's cfg stays EAP-IG's

    def test_the_head_graph_is_unchanged(self):
        plain, tagged = Graph(3, 2), Graph(3, 2, ())
        assert plain == tagged and plain.edge_names == tagged.edge_names
        assert plain.mask.equal(plain.sender_layers[:, None] < _receiver_layers(plain))


def _receiver_layers(graph: Graph):
    import torch

    return torch.tensor([r.layer for r in graph.receivers])[None, :]


Graph.receivers_layers_for_test = lambda self: _receiver_layers(self)  # the old rule, written out


class TestRefusals:
    @pytest.mark.parametrize(
        "kwargs, word",
        [
            ({"writes": "blocks.0.attn.hook_z"}, "writes"),
            ({"latents": (3, 1)}, "latents"),
            ({"latents": (-1,)}, "latents"),
            ({"reads": "blocks.1.hook_resid_pre"}, "one block"),
            ({"reads": "blocks.0.hook_resid_post", "writes": "blocks.0.hook_mlp_out"}, "before"),
        ],
    )
    def test_bad_sites_are_refused_by_name(self, kwargs, word):
        fields = {"writes": "blocks.0.hook_resid_post", "reads": "blocks.0.hook_resid_post", "latents": (1,)}
        with pytest.raises(InputError, match=word):
            FeatureSite(**(fields | kwargs))

    def test_bad_graphs_are_refused(self):
        with pytest.raises(InputError, match="one dictionary per hook"):
            Graph(2, 2, (RESID0, RESID0))
        with pytest.raises(InputError, match="not in a model"):
            Graph(1, 2, (TRANSCODER1,))
        with pytest.raises(InputError, match="head graph"):
            mixed().senders_before(1)
