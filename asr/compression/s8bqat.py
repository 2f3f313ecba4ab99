"""S8BQAT (sub-8-bit QAT for an 8-bit NNA; ``shared/reference/seed-methods.md`` section 1) behind a
torchao-shaped API: ``quantize_(model, S8BQATConfig(...), step="prepare")`` fits a frozen Lloyd-Max
codebook to every selected float32 weight; training then adds ``lambda(t) * regularizer(model)``
(MRACos) to its loss and calls ``hard_compress_(model)`` every ``hard_compress_every`` steps;
``quantize_(model, config, step="convert")`` snaps every selected weight to its codebook for good.
The numerics live in :mod:`asr.compression.codebook`.

What is not here yet (issue 6): the ``asr compress`` command and its training-loop wiring, the
export of b-bit indices, and the other methods (int8 QAT, GQ, CSP, accelerator-aware training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from asr.compression.codebook import hard_compress, lloyd_max, mracos
from asr.errors import UserError

CODEBOOK_SUFFIX = "_codebook"


def default_filter(module: nn.Module, name: str) -> bool:
    """Matrices and kernels (2-D and up) of Linear, Conv, LSTM and Embedding layers; biases and
    normalisation parameters stay float."""
    return isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.LSTM, nn.Embedding)) and name.startswith("weight")


@dataclass
class S8BQATConfig:
    bits: int = 4  # per weight tensor, unless ``bits_per_layer`` names it
    bits_per_layer: dict = field(default_factory=dict)  # {"encoder.stack.layers.0.weight_ih_l0": 6, ...}
    snap_int8: bool = True  # codebook levels on the tensor's int8 grid: an 8-bit NNA runs the model unchanged
    lambda_max: float = 1e-2  # MRACos weight after the ramp
    ramp_fraction: float = 0.1  # of the fine-tuning steps, lambda rises linearly from 0
    hard_compress_every: int = 500  # optimizer steps between hard compressions
    filter_fn: Callable[[nn.Module, str], bool] = default_filter

    def __post_init__(self):
        for name, b in [("bits", self.bits), *self.bits_per_layer.items()]:
            if not isinstance(b, int) or not 1 <= b <= 8:
                raise UserError(f"S8BQAT {name}={b}: bit widths must be integers from 1 to 8")
        if self.lambda_max < 0 or not 0 <= self.ramp_fraction <= 1 or self.hard_compress_every < 1:
            raise UserError(f"S8BQAT lambda_max={self.lambda_max}, ramp_fraction={self.ramp_fraction}, "
                            f"hard_compress_every={self.hard_compress_every}: need >= 0, in [0, 1] and >= 1")

    def weight(self, step: int, total_steps: int) -> float:
        """lambda(t): linear from 0 to lambda_max over the first ramp_fraction of the steps."""
        ramp = self.ramp_fraction * total_steps
        return self.lambda_max if ramp <= 0 else self.lambda_max * min(1.0, step / ramp)


def _selected(model: nn.Module, config: S8BQATConfig):
    """(qualified name, module, parameter name) of every weight the config quantizes."""
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if param.dim() >= 2 and config.filter_fn(module, name):
                yield (f"{module_name}.{name}" if module_name else name), module, name


def codebooks(model: nn.Module):
    """(qualified weight name, module, parameter name, codebook) of a prepared model."""
    for module_name, module in model.named_modules():
        for buffer_name, book in module.named_buffers(recurse=False):
            if buffer_name.endswith(CODEBOOK_SUFFIX):
                name = buffer_name[: -len(CODEBOOK_SUFFIX)]
                yield (f"{module_name}.{name}" if module_name else name), module, name, book


@torch.no_grad()
def quantize_(model: nn.Module, config: S8BQATConfig, step: str = "prepare") -> nn.Module:
    """``prepare``: fit a codebook of ``2**bits`` levels to each selected weight (a buffer
    ``<weight>_codebook`` beside it, saved with the state dict); ``convert``: hard-compress every
    prepared weight onto its codebook. In place; returns ``model``."""
    if step == "prepare":
        names = [q for q, _, _ in _selected(model, config)]
        unknown = sorted(set(config.bits_per_layer) - set(names))
        if unknown:
            raise UserError(f"S8BQAT bits_per_layer names weights the filter does not select: {', '.join(unknown)}")
        if not names:
            raise UserError("S8BQAT: the filter selected no weight; check filter_fn")
        for qualified, module, name in _selected(model, config):
            weight = getattr(module, name)
            bits = config.bits_per_layer.get(qualified, config.bits)
            module.register_buffer(name + CODEBOOK_SUFFIX, lloyd_max(weight, bits, snap_int8=config.snap_int8))
    elif step == "convert":
        if not hard_compress_(model):
            raise UserError("quantize_(step='convert'): the model was not prepared; run step='prepare' first")
    else:
        raise UserError(f"quantize_ step={step!r}: use 'prepare' or 'convert'")
    return model


@torch.no_grad()
def hard_compress_(model: nn.Module) -> int:
    """Snap every prepared weight (the float32 master copy) to its nearest codebook level; returns
    how many tensors were compressed."""
    count = 0
    for _, module, name, book in codebooks(model):
        weight = getattr(module, name)
        weight.copy_(hard_compress(weight, book))
        count += 1
    return count


def regularizer(model: nn.Module) -> torch.Tensor:
    """R(W) = sum over prepared tensors of the mean MRACos penalty of their weights (0 when every
    weight sits on a level; up to 1 per tensor)."""
    terms = [mracos(getattr(module, name), book).mean() for _, module, name, book in codebooks(model)]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def model_bytes(model: nn.Module) -> int:
    """Bytes on the device: each prepared weight as b-bit indices (b = log2 of its codebook size)
    plus its codebook as float32 levels; every other parameter as float32."""
    prepared = set()
    total = 0
    for _, module, name, book in codebooks(model):
        weight = getattr(module, name)
        prepared.add(id(weight))
        bits = max(1, math.ceil(math.log2(book.numel())))
        total += math.ceil(weight.numel() * bits / 8) + book.numel() * 4
    total += sum(p.numel() * 4 for p in model.parameters() if id(p) not in prepared)
    return total
