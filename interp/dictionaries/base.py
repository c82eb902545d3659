"""The one interface of every dictionary (SAE, transcoder, skip transcoder) and its config.

A dictionary reads activations `x` at `hook_name` (width `d_in`) and writes `d_out`-wide vectors:
for an SAE the reconstruction of `x` itself (`d_out = d_in`), for a transcoder a prediction of the
activation at `hook_name_out` (e.g. `blocks.L.ln1.hook_normalized` -> `blocks.L.hook_mlp_out`):

    pre  = (x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc      [..., d_sae]
    acts = activation(pre)                                           (per architecture)
    out  = acts @ W_dec + b_dec  (+ x @ W_skip.T for a skip transcoder)

The parameter names and shapes are SAELens's (`W_enc [d_in, d_sae]`, `W_dec [d_sae, d_out]`), so a
state dict is a SAELens `sae_weights.safetensors`. Parameters are float32 whatever the model's dtype:
inputs are cast to float32 on the way in.

An architecture (one file in `architectures/`) subclasses `Dictionary` with its config dataclass and
says how latents activate at inference (`activate`), during training (`train_activate`, e.g.
BatchTopK's batch-wide selection) and which sparsity or auxiliary losses it adds (`extra_losses`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from interp.base.errors import InputError

Kind = Literal["sae", "transcoder", "skip_transcoder"]
KINDS = ("sae", "transcoder", "skip_transcoder")
ENCODER_INIT_NORM = 3**-0.5  # eai-sparsify's Kaiming-uniform encoder columns: sqrt(d_in / (3 d_in))


def warmup_factor(step: int, warmup_steps: int) -> float:
    """A linear ramp from 1/warmup_steps at step 0 to 1 at step warmup_steps - 1, then 1 (no warm-up: 1)."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


@dataclass
class DictionaryConfig:
    """What every dictionary has; architectures add their own fields (k, sparsity coefficients)."""

    d_in: int
    """Width of the activation read (the hook point's last axis)."""
    d_sae: int
    """Number of latents."""
    hook_name: str | None = None
    """The hook point read, e.g. `blocks.2.hook_resid_pre` (None: trained on bare tensors)."""
    kind: Kind = "sae"
    """`sae` reconstructs its input; `transcoder` predicts `hook_name_out` from `hook_name`;
    `skip_transcoder` adds a linear skip path `x @ W_skip.T`."""
    hook_name_out: str | None = None
    """The hook point a transcoder writes, e.g. `blocks.2.hook_mlp_out` (None for an SAE)."""
    d_out: int | None = None
    """Width written; None means `d_in` (always `d_in` for an SAE)."""
    apply_b_dec_to_input: bool | None = None
    """Subtract `b_dec` from the input before encoding. None: True for an SAE, False for a
    transcoder (its `b_dec` lives in the output space, so True is refused there)."""
    encoder_init_norm: float = ENCODER_INIT_NORM
    """Norm of every latent's encoder column (`W_enc[:, i]`) at initialisation; decoder rows start
    at unit norm. An SAE's encoder starts as the decoder's transpose times this (Gao et al. 2024
    use 1); eai-sparsify's `nn.Linear` (Kaiming-uniform) encoder has columns of norm ~ 1/sqrt(3).
    It sets the scale of the first reconstructions (`k` latents of a TopK SAE add up), which is
    what the first steps spend undoing; see benchmarks/README.md for the measured choice."""

    architecture: ClassVar[str] = ""

    def __post_init__(self) -> None:
        norm = self.encoder_init_norm
        if isinstance(norm, bool) or not isinstance(norm, int | float) or not 0 < norm < float("inf"):
            raise InputError(f"encoder_init_norm={norm!r} is not allowed; it must be a finite number > 0.")
        self.encoder_init_norm = float(norm)
        for name in ("d_in", "d_sae"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name}={value!r} is not allowed; it must be a positive integer.")
        if self.kind not in KINDS:
            raise InputError(f"kind={self.kind!r} is not allowed; use one of {', '.join(KINDS)}.")
        if self.kind == "sae":
            if self.hook_name_out is not None and self.hook_name_out != self.hook_name:
                raise InputError(
                    f"hook_name_out={self.hook_name_out!r} is only for transcoders: an SAE writes the hook "
                    f"it reads ({self.hook_name!r}). Use kind='transcoder' to map one hook to another."
                )
            if self.d_out not in (None, self.d_in):
                raise InputError(
                    f"d_out={self.d_out} differs from d_in={self.d_in}: an SAE writes what it reads."
                )
            self.hook_name_out = None
            self.d_out = self.d_in
            if self.apply_b_dec_to_input is None:
                self.apply_b_dec_to_input = True
        else:
            if self.d_out is None:
                self.d_out = self.d_in
            if isinstance(self.d_out, bool) or not isinstance(self.d_out, int) or self.d_out < 1:
                raise InputError(f"d_out={self.d_out!r} is not allowed; it must be a positive integer.")
            if self.apply_b_dec_to_input:
                raise InputError(
                    f"apply_b_dec_to_input=True is refused for a {self.kind}: its b_dec is a bias of the "
                    "output hook, not a point of the input space (SAELens and sparsify refuse it too)."
                )
            self.apply_b_dec_to_input = False

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON values, with the architecture's name."""
        return {"architecture": self.architecture, **dataclasses.asdict(self)}


class Dictionary(nn.Module):
    """A sparse dictionary: `encode`, `decode`, `forward`; see the module docstring for the maths."""

    config_class: ClassVar[type[DictionaryConfig]] = DictionaryConfig
    unit_norm_decoder: ClassVar[bool] = True
    """Training keeps decoder rows at unit norm (and removes the gradient along them). False for
    ReLU + L1, whose penalty weighs each latent by its decoder norm instead."""

    W_skip: Tensor | None

    def __init__(self, cfg: DictionaryConfig, *, seed: int = 0):
        super().__init__()
        if type(cfg) is not self.config_class:
            raise InputError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, not a {type(cfg).__name__}."
            )
        self.cfg = cfg
        d_in, d_sae, d_out = cfg.d_in, cfg.d_sae, cfg.d_out
        self.W_enc = nn.Parameter(torch.empty(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_out))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        if cfg.kind == "skip_transcoder":
            self.W_skip = nn.Parameter(torch.zeros(d_out, d_in))
        else:
            self.W_skip = None
        self.training_log: list[dict] = []  # filled by training (see training.py)
        self.file_metadata: dict[str, Any] = {}  # descriptive fields of the file it was loaded from
        self.log_density: Tensor | None = None  # log10 firing frequency per latent, if known
        self.trained = False  # set by training and by loading: the weights are not a random init
        self.initialize(seed)

    # --- what it is -------------------------------------------------------------------------
    @property
    def architecture(self) -> str:
        return self.cfg.architecture

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    @property
    def d_out(self) -> int:
        return self.cfg.d_out

    @property
    def kind(self) -> Kind:
        return self.cfg.kind

    @property
    def hook_name(self) -> str | None:
        return self.cfg.hook_name

    @property
    def hook_name_out(self) -> str | None:
        """The hook written: `hook_name_out` for a transcoder, `hook_name` for an SAE."""
        return self.cfg.hook_name if self.cfg.kind == "sae" else self.cfg.hook_name_out

    def extra_repr(self) -> str:
        hooks = self.hook_name if self.kind == "sae" else f"{self.hook_name} -> {self.hook_name_out}"
        return f"{self.architecture} {self.kind}, d_in={self.d_in}, d_sae={self.d_sae}, hooks: {hooks}"

    # --- initialisation -----------------------------------------------------------------------
    @torch.no_grad()
    def initialize(self, seed: int = 0) -> None:
        """Random unit decoder rows; for an SAE the encoder is the decoder's transpose (Gao et al.
        2024), for a transcoder an independent random map; encoder columns of norm
        `cfg.encoder_init_norm`. Biases zero."""
        generator = torch.Generator().manual_seed(seed)
        W_dec = torch.randn(self.d_sae, self.d_out, generator=generator)
        self.W_dec.copy_(W_dec / W_dec.norm(dim=-1, keepdim=True))
        if self.kind == "sae":
            self.W_enc.copy_(self.W_dec.T * self.cfg.encoder_init_norm)
        else:
            W_enc = torch.randn(self.d_in, self.d_sae, generator=generator)
            self.W_enc.copy_(W_enc / W_enc.norm(dim=0, keepdim=True) * self.cfg.encoder_init_norm)
        self.b_enc.zero_()
        self.b_dec.zero_()
        if self.W_skip is not None:
            self.W_skip.zero_()

    # --- the forward --------------------------------------------------------------------------
    def pre_acts(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """Latent pre-activations (float32)."""
        x = x.to(torch.float32)
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activate(self, pre: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        """Inference activation of each latent from its pre-activation (per architecture)."""
        raise NotImplementedError

    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """Latent activations of `x` (float32, non-negative, sparse)."""
        return self.activate(self.pre_acts(x))

    def decode(self, acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_out"]:
        """The vector written from latent activations (without a skip transcoder's skip path)."""
        return acts @ self.W_dec + self.b_dec

    def skip(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        """A skip transcoder's linear path `x @ W_skip.T` (zeros for other kinds)."""
        if self.W_skip is None:
            return torch.zeros(*x.shape[:-1], self.d_out, device=x.device)
        return x.to(torch.float32) @ self.W_skip.T

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        """Reconstruction (SAE) or prediction of the output hook (transcoder)."""
        out = self.decode(self.encode(x))
        return out + self.skip(x) if self.W_skip is not None else out

    # --- training -----------------------------------------------------------------------------
    def train_activate(self, pre: Float[Tensor, "token d_sae"]) -> Float[Tensor, "token d_sae"]:
        """Activation used while training (differentiable); inference's `activate` by default."""
        return self.activate(pre)

    def extra_losses(
        self,
        pre: Float[Tensor, "token d_sae"],
        acts: Float[Tensor, "token d_sae"],
        out: Float[Tensor, "token d_out"],
        target: Float[Tensor, "token d_out"],
        dead: Bool[Tensor, " d_sae"],
        step: int,
    ) -> dict[str, Tensor]:
        """Sparsity / auxiliary losses added to the reconstruction MSE (none by default)."""
        return {}

    def training_losses(
        self,
        x: Float[Tensor, "token d_in"],
        target: Float[Tensor, "token d_out"],
        dead: Bool[Tensor, " d_sae"],
        step: int,
    ) -> tuple[Float[Tensor, "token d_sae"], Float[Tensor, "token d_out"], dict[str, Tensor]]:
        """Latent activations, output and named losses (`mse`: squared error summed over the
        output's dims, averaged over tokens, plus the architecture's `extra_losses`)."""
        pre = self.pre_acts(x)
        acts = self.train_activate(pre)
        out = self.decode(acts)
        if self.W_skip is not None:
            out = out + self.skip(x)
        losses = {"mse": (out - target).pow(2).sum(-1).mean()}
        losses.update(self.extra_losses(pre, acts, out, target, dead, step))
        return acts, out, losses

    def after_step(self) -> None:
        """Called after each optimiser step (e.g. to keep a threshold in range)."""

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Scale every decoder row to unit norm."""
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_parallel_decoder_grad(self) -> None:
        """Remove the part of W_dec's gradient along each (unit) row, so a step turns rows
        rather than lengthening them (Bricken et al. 2023)."""
        if self.W_dec.grad is None:
            return
        along = (self.W_dec.grad * self.W_dec).sum(-1, keepdim=True)
        self.W_dec.grad.sub_(along * self.W_dec)
