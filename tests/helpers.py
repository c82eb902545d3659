"""Factories for tiny random Phi models saved as real model directories (no downloads)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import torch
from transformers import PhiConfig, PhiForCausalLM

from interp.data.prompts import PromptPairs
from interp.data.tasks.ioi_grammar import sample_ioi
from interp.toy.train import make_tokenizer
from interp.toy.vocab import D_VOCAB, TRAIN_NAMES, TRAIN_TEMPLATES


def make_phi_config(**overrides) -> PhiConfig:
    """A tiny Phi: 2 layers, d_model 80, 2 heads of 40 dims, rotary on 16 of them (factor 0.4)."""
    settings = dict(
        vocab_size=D_VOCAB,
        hidden_size=80,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=2,
        partial_rotary_factor=0.4,
        max_position_embeddings=64,
        hidden_act="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attention_dropout=0.0,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    settings.update(overrides)
    return PhiConfig(**settings)


@torch.no_grad()
def make_phi_model(seed: int = 0, weight_std: float = 0.2, **overrides) -> PhiForCausalLM:
    """Random weights with LayerNorm weights/biases and every bias randomised (so folding matters).

    `weight_std` 0.2 suits the tiny test sizes; at Phi-2's width it saturates every attention
    pattern and makes the network chaotic, so full-size benchmarks use 0.02 (Phi-2's own init).
    """
    torch.manual_seed(seed)
    model = PhiForCausalLM(make_phi_config(**overrides)).eval()
    for name, param in model.named_parameters():
        if "layernorm" in name:
            base = 1.0 if name.endswith("weight") else 0.0
            param.copy_(base + 0.3 * torch.randn_like(param))
        elif name.endswith("bias"):
            param.copy_(0.1 * torch.randn_like(param))
        else:
            param.copy_(weight_std * torch.randn_like(param))
    return model


def save_phi_dir(
    directory: Path, seed: int = 0, tokenizer: bool = True, weight_std: float = 0.2, **overrides
) -> Path:
    """Write a tiny random Phi (and, by default, the toy tokenizer) as a model directory."""
    model = make_phi_model(seed, weight_std, **overrides)
    model.save_pretrained(directory)
    if tokenizer:
        make_tokenizer().save_pretrained(directory)
    return directory


CUE_CLEAN, CUE_CORRUPTED, ANSWER, WRONG = 10, 11, 20, 21


@torch.no_grad()
def plant_cue_head(model, layer: int, head: int, clean_cues: list[int], corrupted_cues: list[int]):
    """Make (layer, head) of the HF Phi `model` the only writer, reading a random unit direction r.

    Every attention output and MLP writes nothing (W_O, fc2 zeroed); the chosen block's LayerNorm and
    the final one are the identity's centring; the chosen head attends uniformly (W_Q = W_K = 0) and
    its first value dimension reads r; every token's embedding is orthogonal to r but the cues', clean
    ones +3r, corrupted ones -3r. Returns (the chosen attention module, r): its W_O is the caller's to set.
    """
    hf = model.model
    d_head = model.config.hidden_size // model.config.num_attention_heads
    heads = slice(head * d_head, (head + 1) * d_head)
    for block in hf.layers:
        block.self_attn.dense.weight.zero_()
        block.self_attn.dense.bias.zero_()
        block.mlp.fc2.weight.zero_()
        block.mlp.fc2.bias.zero_()
    chosen = hf.layers[layer]
    for norm in (chosen.input_layernorm, hf.final_layernorm):
        norm.weight.fill_(1.0)
        norm.bias.zero_()
    attn = chosen.self_attn
    for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
        proj.weight[heads] = 0
        proj.bias[heads] = 0
    r = torch.randn(model.config.hidden_size)
    r = r - r.mean()
    r = r / r.norm()
    attn.v_proj.weight[head * d_head] = r
    embed = hf.embed_tokens.weight
    embed -= torch.outer(embed @ r, r)  # every token orthogonal to r ...
    embed[clean_cues] += 3.0 * r  # ... but the cues
    embed[corrupted_cues] -= 3.0 * r
    return attn, r


@torch.no_grad()
def save_answer_head_dir(directory: Path, layer: int = 1, head: int = 1, seed: int = 0) -> Path:
    """A model built by construction: head (layer, head) alone writes the answer direction.

    Every other head and every MLP writes nothing (W_O, fc2 zeroed). The chosen head attends
    uniformly (W_Q = W_K = 0) and its first value dimension reads a direction r of the residual
    stream; the clean cue token's embedding is +r, the corrupted cue's -r, every other token is
    orthogonal to r. Its W_O maps that value dimension onto the answer-minus-wrong unembedding
    direction, so logit(ANSWER) - logit(WRONG) is positive with the clean cue, negative with the
    corrupted one, and comes from that head alone.
    """
    model = make_phi_model(seed)
    attn, _ = plant_cue_head(model, layer, head, [CUE_CLEAN], [CUE_CORRUPTED])
    d_head = model.config.hidden_size // model.config.num_attention_heads
    u = model.lm_head.weight[ANSWER] - model.lm_head.weight[WRONG]
    attn.dense.weight[:, head * d_head] = 40.0 * (u - u.mean()) / u.norm() ** 2
    model.save_pretrained(directory)
    make_tokenizer().save_pretrained(directory)
    return directory


def interrupted_at(call: int, real):
    """`real`, except that its `call`-th call raises KeyboardInterrupt (a simulated Ctrl-C)."""
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    return wrapper


def tokenizer_only_model(tokenizer):
    """A stand-in with Phi-2's tokenizer and no weights, for checks that only tokenize (tasks).

    It has every attribute of `interp.HookedPhi`, so type checks pass; anything that runs it fails.
    """
    from types import SimpleNamespace

    def unavailable(*args, **kwargs):
        raise RuntimeError("a tokenizer-only stand-in has no weights")

    cfg = SimpleNamespace(d_vocab=51200, n_ctx=2048, device="cpu")
    return SimpleNamespace(
        cfg=cfg,
        tokenizer=tokenizer,
        original_model=None,
        hook_dict={},
        interp_info=None,
        hooks=unavailable,
        run_with_cache=unavailable,
    )


def ioi_pairs(tokenizer, n: int, seed: int = 0, templates=None) -> PromptPairs:
    """IOI pairs whose corrupted prompt repeats the indirect object instead of the subject."""
    rng = random.Random(seed)
    template = rng.choice(TRAIN_TEMPLATES) if templates is None else None
    rows = []
    for _ in range(n):
        ex = sample_ioi(rng, [template] if template else templates, TRAIN_NAMES)
        rows.append(dict(clean=ex.prompt, corrupted=ex.corrupted, answer=ex.io, wrong=ex.s))
    return PromptPairs.from_strings(tokenizer, rows)


TOKENS = torch.tensor(
    [
        [2, 33, 3, 34, 4, 5, 6, 71, 7, 34, 8, 9, 81, 5],
        [40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53],
    ]
)


def use_hf_cache(monkeypatch, cache) -> None:
    """Point huggingface_hub at `cache`, offline (it reads both settings when imported)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))


def hf_reference(directory) -> PhiForCausalLM:
    return PhiForCausalLM.from_pretrained(directory, attn_implementation="eager").eval()


PLANTED_EDGES = ["input->a0.h0<v>", "a0.h0->a1.h1<v>", "a1.h1->logits"]


@torch.no_grad()
def save_edge_circuit_dir(directory: Path, seed: int = 0) -> Path:
    """A model built by construction whose answer travels exactly PLANTED_EDGES.

    Head a0.h0 attends uniformly (W_Q = W_K = 0) and reads, through its value input, a direction r
    of the embedding: the clean cue token's embedding is +r, the corrupted cue's -r, every other token
    is orthogonal to r. It writes that onto a direction s. Head a1.h1 (also uniform) reads s through its
    value input and writes the answer-minus-wrong unembedding direction. Every other head and every
    MLP writes nothing, and r, s and the answer direction are orthogonal to each other and to every
    other embedding, so no other edge carries the cue. The embeddings are large and the writes small, so
    every LayerNorm works in its near-linear regime (logit difference about +-1): gradient methods are
    then expected to find the planted edges too, not only exact patching.
    """
    model = make_phi_model(seed)
    hf, config = model.model, model.config
    d_model = config.hidden_size
    d_head = d_model // config.num_attention_heads
    for block in hf.layers:
        block.self_attn.dense.weight.zero_()
        block.self_attn.dense.bias.zero_()
        block.mlp.fc2.weight.zero_()
        block.mlp.fc2.bias.zero_()
        block.input_layernorm.weight.fill_(1.0)
        block.input_layernorm.bias.zero_()
    hf.final_layernorm.weight.fill_(1.0)
    hf.final_layernorm.bias.zero_()
    u = model.lm_head.weight[ANSWER] - model.lm_head.weight[WRONG]
    u = u - u.mean()
    basis = torch.linalg.qr(torch.cat([u[:, None], torch.randn(d_model, 2)], dim=1)).Q  # u, r, s orthonormal
    r, s = basis[:, 1] - basis[:, 1].mean(), basis[:, 2] - basis[:, 2].mean()
    r, s = r / r.norm(), s - (s @ r) * r
    s = s / s.norm()
    embed = hf.embed_tokens.weight
    for direction in (r, s, u / u.norm()):
        embed -= torch.outer(embed @ direction, direction)  # every token orthogonal to r, s and u ...
    embed *= 10.0  # a large residual norm keeps every LayerNorm in its near-linear regime
    embed[CUE_CLEAN] += 3.0 * r  # ... but the cues
    embed[CUE_CORRUPTED] -= 3.0 * r
    for layer, head, reads, writes in ((0, 0, r, s), (1, 1, s, None)):
        attn = hf.layers[layer].self_attn
        rows = slice(head * d_head, (head + 1) * d_head)
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            proj.weight[rows] = 0
            proj.bias[rows] = 0
        attn.v_proj.weight[head * d_head] = reads
        column = 10.0 * s if writes is not None else 2.0 * u / u.norm() ** 2
        attn.dense.weight[:, head * d_head] = column
    model.save_pretrained(directory)
    make_tokenizer().save_pretrained(directory)
    return directory


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's; .ci/run installs it
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip


def launch_chromium(playwright):
    """Debian's Chromium through Playwright, with its own background network traffic switched off."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def open_offline_page(playwright, path, height: int = 1000):
    """(browser, page, errors, external) for `path` in Chromium with the network cut off: console errors,
    page errors and dialogs are collected in `errors`, any request not for a file: URL is aborted and
    recorded in `external`. The caller closes the browser (closed here if the page fails to open)."""
    errors, external = [], []
    browser = launch_chromium(playwright)
    try:
        page = browser.new_page(viewport={"width": 1200, "height": height})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))

        def route(r):
            if r.request.url.startswith("file:"):
                r.continue_()
            else:
                external.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.goto(path.resolve().as_uri(), wait_until="load")
    except BaseException:
        browser.close()
        raise
    return browser, page, errors, external
