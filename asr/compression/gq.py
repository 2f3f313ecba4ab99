"""General Quantizer (GQ; Zhen et al., "Sub-8-bit quantization for on-device speech recognition: a
regularization-free approach", SLT 2022; the annealing schedule and initialisations are reconstructed).

Each selected weight W gets a b-bit codebook on a mu-law curve with a trainable range s and a
trainable density mu (a ``MuLawQuantizer`` parametrization, so the forward pass sees the quantized
weight and gradients reach W, s and mu):

    u_j = -1 + 2 j / (K - 1), j = 0..K-1 (K = 2^b)         uniform in the companded domain
    c_j = s * sgn(u_j) * ((1 + mu)^|u_j| - 1) / mu           mu = softplus(rho) + 1e-6
    w~  = sum_j softmax_j(-(w - c_j)^2 / tau) c_j             soft-to-hard assignment

tau anneals exponentially from the squared mean level spacing (2 s / (K - 1))^2 to ``tau_min_ratio``
times it over the first ``anneal_fraction`` of the fine-tuning steps; after that the quantizer is
hard (nearest level, straight-through to W, gradients still reaching s and mu through the chosen
level). No regularizer: the training loss is the task loss. ``quantize_every`` N_q: the quantized
forward runs every N_q-th step only (float steps in between; the reference's "quantization
frequency"). ``snap_int8`` (default) rounds the levels onto the int8 grid of the range, s / 127
(straight-through), so the trained levels are int8 codes that an 8-bit NNA quantizing the tensor
per tensor (``export.nna``) reproduces exactly; at small ranges and large mu neighbouring levels
can then coincide. ``convert`` writes every weight as its nearest level and keeps the levels as the
weight's ``_codebook`` buffer (the export format of :mod:`asr.compression.common`).

Reconstructed choices (the paper's equations were not available): the codebook formula above, the
exponential schedule, s initialised to the range that quantizes the float weights with the least
squared error (``scale_init: mse``; the reference's max |W| is ``max``, and fails at one bit), mu to
``mu_init``, s and rho trained at
``param_lr_ratio`` x the learning rate without weight decay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from asr.compression.codebook import hard_compress, nearest_index
from asr.compression.common import BITS, CODEBOOK_SUFFIX, CompressionMethod, MethodConfig, check_names, register_handler
from asr.bounds import COUNT, FRACTION, Range, check_bounds
from asr.errors import UserError
from nna_emulator import spec

MU_EPS = 1e-6


def mu_law_codebook(scale: torch.Tensor, mu: torch.Tensor, bits: int) -> torch.Tensor:
    """(2^bits,) ascending, symmetric levels with endpoints +-scale, uniform in the mu-law domain;
    differentiable in ``scale`` and ``mu``; mu -> 0 gives ``scale * linspace(-1, 1, K)``."""
    u = torch.linspace(-1.0, 1.0, 2**bits, dtype=scale.dtype, device=scale.device)
    # ((1 + mu)^|u| - 1) / mu, written with expm1/log1p so that small mu stays exact
    return scale * torch.sign(u) * torch.expm1(u.abs() * torch.log1p(mu)) / mu


def soft_assign(w: torch.Tensor, levels: torch.Tensor, tau: torch.Tensor | float) -> torch.Tensor:
    """(w.shape + (K,)) softmax weights of every element over the levels at temperature ``tau``."""
    return torch.softmax(-((w.unsqueeze(-1) - levels) ** 2) / tau, dim=-1)


SOFT_BLOCK = 1 << 20  # (element, level) pairs per block of the soft assignment: 4 MB at float32


class _SoftQuantize(torch.autograd.Function):
    """sum_j softmax_j(-(w - c_j)^2 / tau) c_j per element, computed in blocks of elements and
    recomputed in the backward: memory O(block) instead of O(weights x levels) (a 6-bit
    LibriSpeech-size model would need tens of GB per intermediate otherwise). Gradients (tau is a
    schedule, not trained):
        dE/dw   = 2 / tau * sum_j p_j (c_j - E)^2        (2 / tau times the variance of the levels)
        dE/dc_j = p_j (1 + 2 / tau (c_j - E)(w - c_j))"""

    @staticmethod
    def forward(ctx, w, c, tau):
        flat, levels = w.detach().reshape(-1), c.detach()
        n = max(1, SOFT_BLOCK // levels.numel())
        out = torch.empty_like(flat)
        for i in range(0, flat.numel(), n):
            out[i:i + n] = soft_assign(flat[i:i + n], levels, tau) @ levels
        ctx.save_for_backward(w, c)
        ctx.tau = tau
        return out.reshape(w.shape)

    @staticmethod
    def backward(ctx, grad):
        w, c = ctx.saved_tensors
        tau, levels = ctx.tau, c.detach()
        flat, g = w.detach().reshape(-1), grad.reshape(-1)
        n = max(1, SOFT_BLOCK // levels.numel())
        gw, gc = torch.empty_like(flat), torch.zeros_like(levels)
        for i in range(0, flat.numel(), n):
            x, gi = flat[i:i + n], g[i:i + n]
            p = soft_assign(x, levels, tau)
            dev = levels - (p @ levels).unsqueeze(-1)  # c_j - E
            pdev = p * dev
            gw[i:i + n] = gi * (2.0 / tau) * (pdev * dev).sum(-1)
            gc += gi @ (p + (2.0 / tau) * pdev * (x.unsqueeze(-1) - levels))
        return gw.reshape(w.shape), gc, None


def soft_quantize(w: torch.Tensor, levels: torch.Tensor, tau: float) -> torch.Tensor:
    """``(soft_assign(w, levels, tau) * levels).sum(-1)`` to float precision, differentiable in w and
    the levels, without materialising the (weights x levels) assignment."""
    return _SoftQuantize.apply(w, levels, float(tau))


@torch.no_grad()
def initial_scale(weight: torch.Tensor, bits: int, mu: float, how: str = "mse") -> torch.Tensor:
    """The range s to start from: ``max`` |W|, or (``mse``) the s in (0, max |W|] whose mu-law levels
    quantize W with the least squared error (40 candidates; at one bit about mean |W|, where
    max |W| would make every weight an outlier-sized +-s)."""
    w = weight.detach().reshape(-1).float()
    top = w.abs().max().clamp(min=1e-8)
    if how == "max":
        return top.reshape(()).clone()
    best, best_err = top, None
    for s in top * torch.linspace(0.025, 1.0, 40):
        c = mu_law_codebook(s, torch.tensor(mu), bits)
        err = float(((w - hard_compress(w, c)) ** 2).mean())
        if best_err is None or err < best_err:
            best, best_err = s, err
    return best.reshape(()).clone()


class MuLawQuantizer(nn.Module):
    """The parametrization W -> w~ of one weight (see the module docstring)."""

    def __init__(self, weight: torch.Tensor, bits: int, mu_init: float, snap_int8: bool = False,
                 scale_init: str = "mse") -> None:
        super().__init__()
        self.bits, self.snap_int8 = bits, snap_int8
        self.scale = nn.Parameter(initial_scale(weight, bits, mu_init, scale_init))
        # softplus^-1(mu_init - eps)
        self.rho = nn.Parameter(torch.tensor(math.log(math.expm1(max(mu_init - MU_EPS, 1e-6))), dtype=weight.dtype))
        self.register_buffer("tau_ratio", torch.ones(()))  # tau / (mean level spacing)^2; 0 = hard
        self.enabled = True  # False on the float steps between quantized ones (quantize_every)

    @property
    def mu(self) -> torch.Tensor:
        return nn.functional.softplus(self.rho) + MU_EPS

    def levels(self) -> torch.Tensor:
        c = mu_law_codebook(self.scale, self.mu, self.bits)
        if self.snap_int8:  # on the int8 grid of the range, s / 127 (straight through to s and mu)
            step = self.scale.detach() / spec.INT8_WEIGHT.qmax
            c = c + (torch.round(c.detach() / step) * step - c.detach())
        return c

    def tau(self) -> torch.Tensor:
        # a schedule, not a path for gradients: tau follows the range without pulling on it
        return self.tau_ratio * (2 * self.scale.detach() / (2**self.bits - 1)) ** 2

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return w
        c = self.levels()
        if float(self.tau_ratio) > 0:
            return soft_quantize(w, c, float(self.tau()))
        return c[nearest_index(w, c)] + (w - w.detach())  # hard; straight-through to w

    @torch.no_grad()
    def entropy(self, w: torch.Tensor) -> float:
        """Mean entropy (nats) of the soft assignment of ``w`` at the current temperature."""
        if float(self.tau_ratio) <= 0:
            return 0.0
        a = soft_assign(w, self.levels(), self.tau())
        return float(-(a * a.clamp(min=1e-30).log()).sum(-1).mean())


@dataclass
class GQConfig(MethodConfig):
    bits: int = 4  # per weight tensor, unless ``bits_per_layer`` names it (down to 1)
    bits_per_layer: dict = field(default_factory=dict)  # {"encoder.stack.layers.2.weight_hh_l0": 1, ...}
    mu_init: float = 10.0
    anneal_fraction: float = 0.6  # of the fine-tuning steps, soft; then hard with straight-through
    tau_min_ratio: float = 1e-4  # tau at the end of annealing, relative to its start
    quantize_every: int = 1  # N_q: quantized forward every N_q-th step, float in between
    param_lr_ratio: float = 0.1  # learning rate of s and mu relative to the weights'
    snap_int8: bool = True  # levels on the int8 grid of the range (s / 127): the NNA runs them exactly
    scale_init: str = "mse"  # "mse": the range that quantizes the float weights best; "max": max |W|

    BOUNDS = {"bits": BITS, "mu_init": Range(0, 1e6, low_open=True), "anneal_fraction": FRACTION,
              "tau_min_ratio": Range(0, 1, low_open=True), "quantize_every": COUNT, "param_lr_ratio": Range(0, 1e3)}

    def __post_init__(self):
        check_bounds(self, "compression")
        self.check_method("gq")
        self.check_bits(self.bits, self.bits_per_layer)
        if self.scale_init not in ("mse", "max"):
            raise UserError(f"GQ scale_init={self.scale_init!r}: use 'mse' or 'max'")

    def tau_ratio(self, step: int, total_steps: int) -> float:
        """tau / tau_0 at ``step``: tau_min_ratio^(t / T_anneal) while annealing, 0 (hard) after."""
        anneal = self.anneal_fraction * total_steps
        if step >= anneal:
            return 0.0
        return self.tau_min_ratio ** (step / anneal)


def quantizers(model: nn.Module):
    """(qualified weight name, module, parameter name, MuLawQuantizer) of a prepared model."""
    for module_name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            for name, plist in module.parametrizations.items():
                for p in plist:
                    if isinstance(p, MuLawQuantizer):
                        yield (f"{module_name}.{name}" if module_name else name), module, name, p


@register_handler(GQConfig)
class GQ(CompressionMethod):
    config: GQConfig

    def prepare(self, model: nn.Module) -> None:
        cfg = self.config
        for qualified, module, name in check_names(model, cfg, cfg.bits_per_layer, "bits_per_layer"):
            bits = cfg.bits_per_layer.get(qualified, cfg.bits)
            parametrize.register_parametrization(module, name, MuLawQuantizer(getattr(module, name), bits, cfg.mu_init, cfg.snap_int8, cfg.scale_init))

    @torch.no_grad()
    def convert(self, model: nn.Module) -> None:
        found = list(quantizers(model))
        if not found:
            raise UserError("quantize_(step='convert'): the model was not prepared for GQ; run step='prepare' first")
        for _, module, name, q in found:
            levels = q.levels().detach().clone()
            w = module.parametrizations[name].original
            codes = levels[nearest_index(w, levels)]
            parametrize.remove_parametrizations(module, name, leave_parametrized=False)
            getattr(module, name).copy_(codes)
            module.register_buffer(name + CODEBOOK_SUFFIX, levels)

    def param_groups(self, model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
        own = {id(p) for *_, q in quantizers(model) for p in (q.scale, q.rho)}
        return [{"params": [p for p in model.parameters() if id(p) not in own]},
                {"params": [p for p in model.parameters() if id(p) in own], "lr": lr * self.config.param_lr_ratio,
                 "weight_decay": 0.0}]

    def step_begin(self, model: nn.Module, step: int, total: int) -> None:
        ratio = self.config.tau_ratio(step, total)
        on = step % self.config.quantize_every == 0
        for *_, q in quantizers(model):
            q.tau_ratio.fill_(ratio)
            q.enabled = on

    def step_end(self, model: nn.Module, step: int, total: int) -> None:
        for *_, q in quantizers(model):  # between steps (validation, checkpoints) the model is quantized
            q.enabled = True

    def forward_context(self):
        # LSTMs read each weight several times a forward; compute every quantized weight once
        return parametrize.cached()

    def describe(self, model: nn.Module) -> str:
        found = list(quantizers(model))
        if not found:
            return ""
        q = found[0][3]
        mus = [float(q.mu.detach()) for *_, q in found]
        return f"GQ tau/tau0 {float(q.tau_ratio):.2e}, mu {min(mus):.1f}..{max(mus):.1f}"
