"""S8BQAT (Zhen et al., "Sub-8-Bit Quantization Aware Training for 8-Bit Neural Network Accelerator with
On-Device Speech Recognition", Interspeech 2022; the equations are reconstructed from the paper):
``quantize_(model, S8BQATConfig(...), step="prepare")`` fits a frozen Lloyd-Max codebook to every
selected float32 weight (a ``<weight>_codebook`` buffer); fine-tuning adds ``lambda(t) * R(W)``
(MRACos, :func:`regularizer`) to the task loss and snaps the float master weights onto their
codebooks every ``hard_compress_every`` optimizer steps (:func:`hard_compress_`); ``convert`` snaps
them for good. The forward pass between hard compressions is plain float (BP-QAT). The numerics
live in :mod:`asr.compression.codebook`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from asr.compression.codebook import hard_compress, lloyd_max, mracos
from asr.compression.common import BITS, CODEBOOK_SUFFIX, CompressionMethod, MethodConfig, check_names, codebooks, register_handler
from asr.bounds import COUNT, FRACTION, Range, check_bounds
from asr.errors import UserError


@dataclass
class S8BQATConfig(MethodConfig):
    bits: int = 4  # per weight tensor, unless ``bits_per_layer`` names it
    bits_per_layer: dict = field(default_factory=dict)  # {"encoder.stack.layers.0.weight_ih_l0": 6, ...}
    snap_int8: bool = True  # codebook levels on the tensor's int8 grid: an 8-bit NNA runs the model unchanged
    lambda_max: float = 1e-2  # MRACos weight after the ramp
    ramp_fraction: float = 0.1  # of the fine-tuning steps, lambda rises linearly from 0
    hard_compress_every: int = 500  # optimizer steps between hard compressions

    BOUNDS = {"bits": BITS, "lambda_max": Range(0, 100), "ramp_fraction": FRACTION, "hard_compress_every": COUNT}

    def __post_init__(self):
        check_bounds(self, "compression")
        self.check_method("s8bqat")
        self.check_bits(self.bits, self.bits_per_layer)

    def weight(self, step: int, total_steps: int) -> float:
        """lambda(t): linear from 0 to lambda_max over the first ramp_fraction of the steps."""
        ramp = self.ramp_fraction * total_steps
        return self.lambda_max if ramp <= 0 else self.lambda_max * min(1.0, step / ramp)


@torch.no_grad()
def hard_compress_(model: nn.Module) -> int:
    """Snap every codebook weight (the float32 master copy) to its nearest level; returns how many
    tensors were compressed."""
    count = 0
    for _, module, name, book in codebooks(model):
        weight = getattr(module, name)
        weight.copy_(hard_compress(weight, book))
        count += 1
    return count


def regularizer(model: nn.Module) -> torch.Tensor:
    """R(W) = sum over codebook tensors of the mean MRACos penalty of their weights (0 when every
    weight sits on a level; up to 1 per tensor)."""
    terms = [mracos(getattr(module, name), book).mean() for _, module, name, book in codebooks(model)]
    return torch.stack(terms).sum() if terms else torch.zeros(())


@register_handler(S8BQATConfig)
class S8BQAT(CompressionMethod):
    config: S8BQATConfig

    @torch.no_grad()
    def prepare(self, model: nn.Module) -> None:
        cfg = self.config
        for qualified, module, name in check_names(model, cfg, cfg.bits_per_layer, "bits_per_layer"):
            bits = cfg.bits_per_layer.get(qualified, cfg.bits)
            module.register_buffer(name + CODEBOOK_SUFFIX, lloyd_max(getattr(module, name), bits, snap_int8=cfg.snap_int8))

    def convert(self, model: nn.Module) -> None:
        if not hard_compress_(model):
            raise UserError("quantize_(step='convert'): the model was not prepared; run step='prepare' first")

    def loss(self, model: nn.Module, step: int, total: int) -> torch.Tensor | None:
        weight = self.config.weight(step, total)
        return weight * regularizer(model) if weight > 0 else None

    def step_end(self, model: nn.Module, step: int, total: int) -> None:
        if step % self.config.hard_compress_every == 0:
            hard_compress_(model)

    def describe(self, model: nn.Module) -> str:
        with torch.no_grad():
            return f"MRACos R(W) {float(regularizer(model)):.4f}"
