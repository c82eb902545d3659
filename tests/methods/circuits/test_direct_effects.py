"""The shared direct-effect scorer (interp.methods.circuits.direct_effects): on the head graph it equals
EAP and EAP-IG's fast per-receiver gradients, edge by edge."""

from __future__ import annotations

import pytest
import torch
from helpers import ioi_pairs

from interp.methods.circuits.direct_effects import score_graph
from interp.methods.circuits.edge_attribution import eap, eap_ig
from interp.methods.circuits.graph import Graph
from interp.model.loading import load_model


@pytest.mark.parametrize("method", ["eap", "eap_ig"])
def test_on_the_head_graph_it_equals_edge_attribution(tiny_phi_dir, method):
    model = load_model(tiny_phi_dir, device="cpu", dtype="float32")
    pairs = ioi_pairs(model.tokenizer, 2)
    graph = Graph(model.cfg.n_layers, model.cfg.n_heads)
    if method == "eap":
        fast = eap(model, pairs)
        ours = score_graph(model, pairs, graph)
    else:
        fast = eap_ig(model, pairs, direction="denoising", steps=2)
        ours = score_graph(model, pairs, graph, method="eap_ig", direction="denoising", steps=2)
    assert ours.graph == fast.graph and float(fast.values.abs().max()) > 1e-2
    torch.testing.assert_close(ours.values, fast.values, rtol=0, atol=1e-5 * float(fast.values.abs().max()))
