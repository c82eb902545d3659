"""Feature circuits: exact on a model that is affine by construction (edge scores equal exact edge
patching, edges into a node sum to its node score, node scores equal feature_attribution's), exact edge
patching equal to a hand-written hooked run on a random model, and the planted feature path of a model
built by construction found as the circuit, with faithfulness ~1."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import ioi_pairs, make_phi_model

from interp.base.errors import InputError
from interp.data.prompts import PromptPairs
from interp.dictionaries import make_dictionary
from interp.dictionaries.splice import splice
from interp.methods.features.attribution import feature_attribution
from interp.methods.features.circuit_evaluation import (
    circuit_metric,
    feature_faithfulness,
    patch_feature_edge,
)
from interp.methods.features.circuits import feature_circuit, select_nodes
from interp.model.loading import load_model
from interp.toy.train import make_tokenizer
from methods.graphs.models import ANSWER, F0, F1, PLANTED_PROMPT, PLANTED_TOKEN, planted_transcoders

D_SAE = 12


@pytest.fixture(scope="module")
def affine_phi(tmp_path_factory):
    """A tiny Phi that is affine in its embeddings by construction, so first order is exact: LayerNorms
    linear to float precision (eps 1e12, weights x 1e6), attention uniform (W_Q = W_K = 0, their biases
    zero: a fixed causal average), every MLP in gelu's linear range (fc1 bias 100, small fc1 weights:
    gelu_new(x) == x in float32 there)."""
    model = make_phi_model(seed=3, layer_norm_eps=1e12)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layernorm" in name and name.endswith("weight"):
                param.mul_(1e6)
            if "q_proj" in name or "k_proj" in name:
                param.zero_()
        for block in model.model.layers:
            block.mlp.fc1.weight.mul_(0.05)
            block.mlp.fc1.bias.fill_(100.0)
            block.mlp.fc2.weight.mul_(0.01)
    directory = tmp_path_factory.mktemp("affine_phi")
    model.save_pretrained(directory)
    make_tokenizer().save_pretrained(directory)
    return load_model(str(directory))


def always_on(hook_name, d_in, seed, kind="sae", hook_name_out=None):
    """A ReLU dictionary whose latents are always active (b_enc 10): affine in what it reads."""
    options = {} if kind == "sae" else {"kind": kind, "hook_name_out": hook_name_out}
    d = make_dictionary("relu", d_in=d_in, d_sae=D_SAE, hook_name=hook_name, seed=seed, **options)
    with torch.no_grad():
        d.b_enc.fill_(10.0)
        d.b_dec.copy_(0.1 * torch.randn(d.d_out, generator=torch.Generator().manual_seed(seed)))
    return d


def affine_dictionaries(model):
    d = model.cfg.d_model
    return [
        always_on("blocks.0.hook_resid_post", d, 1),
        always_on("blocks.1.ln1.hook_out", d, 2, "transcoder", "blocks.1.hook_mlp_out"),
        always_on("blocks.1.hook_resid_post", d, 3),
    ]


def close(actual, expected, rel=1e-3):
    scale = max(float(torch.as_tensor(expected).abs().max()), 1e-6)
    torch.testing.assert_close(torch.as_tensor(actual), torch.as_tensor(expected), rtol=0, atol=rel * scale)


def largest_edge(circuit, sources: str, targets: str) -> tuple[str, str]:
    """The (source, target) labels of the largest |edge| between nodes matching the two patterns: a
    label, or a site's prefix `<hook>[` (its latents)."""

    def match(label: str, pattern: str) -> bool:
        if pattern.endswith("["):
            return label.startswith(pattern) and not label.endswith("[error]")
        return label == pattern

    names = [circuit.labels[t] if t != -1 else "metric" for t in circuit.targets]
    edges = [
        (abs(float(circuit.edges[i, j])), circuit.labels[s], names[j])
        for i, s in enumerate(circuit.sources)
        for j in range(len(names))
        if match(circuit.labels[s], sources) and match(names[j], targets)
    ]
    return max(edges)[1:]


@pytest.fixture(scope="module")
def affine_circuit(affine_phi):
    pairs = ioi_pairs(affine_phi.tokenizer, 3)
    dicts = affine_dictionaries(affine_phi)
    return pairs, dicts, feature_circuit(affine_phi, dicts, pairs)


class TestExactWhereAffine:
    def test_node_scores_are_feature_attribution_summed_over_positions(self, affine_phi, affine_circuit):
        pairs, dicts, circuit = affine_circuit
        nodes = feature_attribution(affine_phi, dicts, pairs)
        by_label = dict(zip(nodes.labels["feature"], nodes.values.sum(1), strict=True))
        ours = torch.stack([circuit.node_scores[circuit.labels.index(label)] for label in by_label])
        close(ours, torch.stack(list(by_label.values())))

    def test_edges_into_each_node_sum_to_its_node_score(self, affine_circuit):
        _, _, circuit = affine_circuit
        assert len(circuit.kept) == len(circuit.labels) - 1  # no selection: every feature node
        sums = circuit.edges[:, :-1].sum(0)
        scores = circuit.node_scores[circuit.kept]
        first_site = [t for t in circuit.kept if circuit.labels[t].startswith("blocks.0.")]
        assert float(scores.abs().max()) > 1e-2
        close(sums, scores, rel=5e-3)  # float32 cancellation around the large constant biases
        # nodes of the first site are reached by the input alone
        rows = [circuit.sources.index(t) for t in first_site if t in circuit.sources]
        assert float(circuit.edges[rows][:, : len(first_site)].abs().max()) == 0.0

    def test_edges_into_the_metric_sum_to_the_whole_change(self, affine_phi, affine_circuit):
        pairs, _, circuit = affine_circuit
        change = circuit.clean - circuit.corrupted  # denoising: patched (clean) - base (corrupted)
        assert abs(change) > 1e-3
        close(circuit.edges[:, -1].sum(), torch.tensor(change))

    @pytest.mark.parametrize(
        "sources, targets",
        [
            ("input", "blocks.0.hook_resid_post["),
            ("blocks.0.hook_resid_post[", "blocks.1.hook_mlp_out["),
            ("blocks.0.hook_resid_post[error]", "blocks.1.hook_resid_post["),
            ("blocks.1.hook_mlp_out[", "blocks.1.hook_resid_post[error]"),
            ("blocks.1.hook_resid_post[", "metric"),
            ("blocks.1.hook_resid_post[error]", "metric"),
        ],
    )
    def test_each_edge_equals_exact_edge_patching(self, affine_phi, affine_circuit, sources, targets):
        """The largest edge from the nodes named `sources` (a label, or a site's prefix) into `targets`."""
        pairs, dicts, circuit = affine_circuit
        source, target = largest_edge(circuit, sources, targets)
        exact = patch_feature_edge(affine_phi, dicts, pairs, source, target).mean()
        score = circuit.edge(source, target)
        scale = float(circuit.edges.abs().max())
        assert abs(float(exact)) > 1e-2 * scale
        torch.testing.assert_close(torch.tensor(score), exact, rtol=0, atol=1e-3 * scale)

    def test_eap_ig_equals_eap_where_affine(self, affine_phi, affine_circuit):
        pairs, dicts, circuit = affine_circuit
        ig = feature_circuit(affine_phi, dicts, pairs, method="eap_ig", steps=2, top_k=5)
        assert ig.extra["steps"] == 2 and ig.method == "eap_ig"
        close(ig.node_scores, circuit.node_scores)
        columns = [circuit.targets.index(t) for t in ig.targets[:-1]] + [-1]
        rows = [circuit.sources.index(s) for s in ig.sources]
        close(ig.edges, circuit.edges[rows][:, columns])


class TestOnARandomModel:
    def test_exact_edge_patch_equals_a_hand_written_hooked_run(self, tiny_phi_dir):
        model = load_model(tiny_phi_dir, device="cpu", dtype="float32")
        pairs = ioi_pairs(model.tokenizer, 2)
        d = model.cfg.d_model
        up = make_dictionary("relu", d_in=d, d_sae=D_SAE, hook_name="blocks.0.hook_resid_post", seed=4)
        down = make_dictionary("relu", d_in=d, d_sae=D_SAE, hook_name="blocks.1.hook_resid_post", seed=5)
        mid = make_dictionary("relu", d_in=d, d_sae=D_SAE, hook_name="blocks.1.hook_attn_out", seed=6)
        dicts = [up, mid, down]
        for x in dicts:
            with torch.no_grad():
                x.b_enc.fill_(1.0)  # the latents patched are active
        circuit = feature_circuit(model, dicts, pairs)
        ups = [
            i
            for i, s in enumerate(circuit.sources)
            if circuit.labels[s].startswith("blocks.0.") and "error" not in circuit.labels[s]
        ]
        downs = [
            j
            for j, t in enumerate(circuit.targets[:-1])
            if circuit.labels[t].startswith("blocks.1.hook_resid_post[") and "error" not in circuit.labels[t]
        ]
        block = circuit.edges[ups][:, downs].abs()
        i, j = divmod(int(block.argmax()), block.shape[1])
        source, target = circuit.labels[circuit.sources[ups[i]]], circuit.labels[circuit.targets[downs[j]]]
        lat_up, lat_down = (int(x.split("[")[1][:-1]) for x in (source, target))
        ours = patch_feature_edge(model, dicts, pairs, source, target)
        rows = torch.arange(len(pairs))

        def metric(logits):
            return logits[rows, -1, pairs.answer] - logits[rows, -1, pairs.wrong]

        with torch.no_grad(), splice(model, dicts, error=True) as spliced:
            names = [spliced.name(x, p) for x in dicts for p in ("hook_acts", "hook_error")]
            clean = model.run_with_cache(pairs.clean_tokens, names_filter=names)[1]
            logits, corrupted = model.run_with_cache(pairs.corrupted_tokens, names_filter=names)
            base = metric(logits)
            up_acts, down_acts = spliced.name(up), spliced.name(down)

            def set_source(acts, hook):  # the source latent from the clean run, every position
                acts = corrupted[up_acts].clone()
                acts[..., lat_up] = clean[up_acts][..., lat_up]
                return acts

            def freeze(value, hook):  # every other node at its corrupted value
                return corrupted[hook.name]

            got = {}

            def read(acts, hook):
                got["down"] = acts[..., lat_down].clone()
                return corrupted[hook.name]

            hooks = [(up_acts, set_source), (spliced.name(up, "hook_error"), freeze)]
            hooks += [(spliced.name(mid, p), freeze) for p in ("hook_acts", "hook_error")]
            hooks += [(down_acts, read)]
            model.run_with_hooks(pairs.corrupted_tokens, fwd_hooks=hooks)

            def patch(acts, hook):
                acts = acts.clone()
                acts[..., lat_down] = got["down"]
                return acts

            patched = metric(model.run_with_hooks(pairs.corrupted_tokens, fwd_hooks=[(down_acts, patch)]))
        expected = patched - base
        assert float(expected.abs().max()) > 1e-4
        close(ours, expected, rel=1e-4)

    def test_eap_is_the_first_order_of_exact_edge_patching(self, tiny_phi_dir):
        """Shrinking the corruption to a small step along the embedding, the exact edge patch over the
        step size tends to the EAP score (a model that is not linear anywhere)."""
        model = load_model(tiny_phi_dir, device="cpu", dtype="float32")
        pairs = ioi_pairs(model.tokenizer, 2)
        d = model.cfg.d_model
        dicts = [
            make_dictionary("relu", d_in=d, d_sae=D_SAE, hook_name="blocks.0.hook_resid_post", seed=7),
            make_dictionary("relu", d_in=d, d_sae=D_SAE, hook_name="blocks.1.hook_resid_post", seed=8),
        ]
        for dd in dicts:
            with torch.no_grad():
                dd.b_enc.fill_(5.0)  # active at base and source alike: no ReLU kink in the step
        circuit = feature_circuit(model, dicts, pairs)
        edge = ("blocks.0.hook_resid_post[2]", "blocks.1.hook_resid_post[9]")
        score = circuit.edge(*edge)
        exact = patch_feature_edge(model, dicts, pairs, *edge).mean()
        assert abs(score) > 1e-3
        # a non-linear model: the estimate is close, not equal
        assert abs(score - float(exact)) < 0.5 * abs(float(exact)) + 1e-3


def planted_pairs(model) -> PromptPairs:
    clean = torch.tensor([PLANTED_PROMPT, [43, 44, 45, PLANTED_TOKEN]])
    corrupted = clean.clone()
    corrupted[:, -1] = 51
    n = len(clean)
    return PromptPairs(clean, corrupted, torch.full((n,), 4), torch.full((n,), ANSWER), torch.full((n,), 61))


F0_LABEL, F1_LABEL = f"blocks.0.hook_mlp_out[{F0}]", f"blocks.1.hook_mlp_out[{F1}]"


class TestPlantedPath:
    @pytest.mark.parametrize("method", ["eap", "eap_ig"])
    @pytest.mark.parametrize("direction", ["denoising", "noising"])
    def test_the_kept_nodes_are_the_planted_path(self, planted_model, method, direction):
        pairs = planted_pairs(planted_model)
        tcs = planted_transcoders(planted_model)
        circuit = feature_circuit(planted_model, tcs, pairs, method=method, direction=direction, top_k=2)
        assert [circuit.labels[i] for i in circuit.kept] == [F0_LABEL, F1_LABEL]
        errors = [circuit.edge(f"blocks.{layer}.hook_mlp_out[error]", "metric") for layer in (0, 1)]
        assert max(abs(e) for e in errors) < 1e-3 * abs(circuit.edge(F1_LABEL, "metric"))

    @pytest.mark.parametrize("method", ["eap", "eap_ig"])
    def test_its_edges_are_the_path(self, planted_model, method):
        """Noising (the base run is the clean one, where the path's ReLUs are open: at the corrupted run
        both planted features sit at pre-activation 0, where ReLU passes no gradient, so denoising EAP
        gives the path's edges 0 and routes the gradient through the error nodes). F0 also acts on the
        metric directly, through the final LayerNorm's scale (its 2u enlarges the residual's norm): a real
        direct effect of this model, so it is not asserted away."""
        pairs = planted_pairs(planted_model)
        tcs = planted_transcoders(planted_model)
        circuit = feature_circuit(planted_model, tcs, pairs, method=method, direction="noising", top_k=2)
        into_f1 = {circuit.labels[s]: float(circuit.edges[i, 1]) for i, s in enumerate(circuit.sources)}
        del into_f1["input"]
        assert max(into_f1, key=lambda k: abs(into_f1[k])) == F0_LABEL
        assert into_f1[F0_LABEL] < -1.0  # removing F0 lowers F1, which lowers the answer's logit
        assert circuit.edge(F1_LABEL, "metric") < -1.0
        exact = patch_feature_edge(planted_model, tcs, pairs, F0_LABEL, F1_LABEL, direction="noising")
        assert float(exact.mean()) < -1.0

    def test_faithfulness_of_the_path_is_one_and_its_complement_zero(self, planted_model):
        pairs = planted_pairs(planted_model)
        tcs = planted_transcoders(planted_model)
        circuit = feature_circuit(planted_model, tcs, pairs, top_k=2)
        curve = feature_faithfulness(planted_model, tcs, pairs, circuit, [0, 1, 2, 10])
        assert curve.sizes == [0, 1, 2, 10]
        assert abs(curve.faithfulness[2] - 1.0) < 0.02 and abs(curve.faithfulness[3] - 1.0) < 0.02
        assert abs(curve.faithfulness[0]) < 0.02  # nothing kept: the empty circuit
        assert abs(curve.faithfulness[1]) < 0.1  # one feature of a serial path carries nothing alone
        assert abs(curve.completeness[2]) < 0.02  # the path ablated: nothing left
        assert abs(curve.completeness[0] - 1.0) < 0.02
        assert curve.full > curve.empty
        for ablation in ("corrupted", "mean"):
            kept = circuit_metric(
                planted_model, tcs, pairs, [circuit.labels[i] for i in circuit.kept], ablation=ablation
            )
            every = circuit_metric(planted_model, tcs, pairs, circuit.labels[1:], ablation=ablation)
            close(kept, every, rel=0.02)

    def test_the_json_holds_the_nodes_and_links(self, planted_model, tmp_path):
        pairs = planted_pairs(planted_model)
        circuit = feature_circuit(planted_model, planted_transcoders(planted_model), pairs, top_k=2)
        data = json.loads(circuit.save(tmp_path / "circuit.json").read_text())
        assert data["metadata"]["format"] == "interp.feature_circuit/1"
        assert [n["node_id"] for n in data["nodes"] if n["kept"]] == [
            f"blocks.0.hook_mlp_out[{F0}]",
            f"blocks.1.hook_mlp_out[{F1}]",
            "metric",
        ]
        weights = {(link["source"], link["target"]): link["weight"] for link in data["links"]}
        for s, t, w in circuit.top_edges(3):
            assert weights[(s, t)] == pytest.approx(w)


class TestRefusals:
    def test_bad_options_are_refused_by_name(self, planted_model):
        pairs = planted_pairs(planted_model)
        tcs = planted_transcoders(planted_model)
        for kwargs, word in [
            ({"steps": 0, "method": "eap_ig"}, "steps"),
            ({"top_k": -1}, "top_k"),
            ({"node_threshold": -0.5}, "node_threshold"),
        ]:
            with pytest.raises(InputError, match=word):
                feature_circuit(planted_model, tcs, pairs, **kwargs)
        skip = make_dictionary(
            "relu", d_in=planted_model.cfg.d_model, d_sae=4, kind="skip_transcoder",
            hook_name="blocks.0.ln1.hook_normalized", hook_name_out="blocks.0.hook_mlp_out",
        )  # fmt: skip
        with pytest.raises(InputError, match="skip transcoder"):
            feature_circuit(planted_model, [skip], pairs)
        neurons = make_dictionary(
            "relu", d_in=planted_model.cfg.d_mlp, d_sae=4, hook_name="blocks.0.mlp.hook_post"
        )  # a point inside the MLP: no node of the feature graph stands there
        with pytest.raises(InputError, match="not allowed for a feature site"):
            feature_circuit(planted_model, [neurons], pairs)
        with pytest.raises(InputError, match="not a node"):
            patch_feature_edge(planted_model, tcs, pairs, "blocks.9.hook_mlp_out[0]", "metric")
        with pytest.raises(InputError, match="upstream"):
            patch_feature_edge(
                planted_model, tcs, pairs, "blocks.1.hook_mlp_out[0]", "blocks.0.hook_mlp_out[1]"
            )

    def test_select_nodes(self):
        scores = torch.tensor([9.0, 0.1, -3.0, 2.0, 0.0])
        assert select_nodes(scores) == [1, 2, 3, 4]
        assert select_nodes(scores, top_k=2) == [2, 3]
        assert select_nodes(scores, node_threshold=1.0) == [2, 3]
        assert select_nodes(scores, top_k=1, node_threshold=0.05) == [2]
