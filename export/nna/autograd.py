"""The torch bridge to the emulated NNA: autograd Functions whose forward runs the integer kernel of
``nna_emulator.ops`` (so the result is exactly what the accelerator computes, dequantized) and whose
backward is the straight-through estimator (STE), so that a model can be trained through the NNA's
numerics (accelerator-aware training).

It lives in ``export/`` because it needs both torch and the kernels: ``nna_emulator`` stays NumPy and
Numba only, and ``asr.compression`` imports the spec but never the kernels. The
forward and the straight-through backward are those of int8 QAT (``asr.compression.qat``), with
the integer core swapped for the emulator's kernel.

STE, as in fake-quant training (Jacob et al. 2018; Bengio et al. 2013): the forward's rounding is
treated as the identity, clipping is not. So the gradient of ``nna_linear`` is the gradient of the
float layer ``y = x_hat @ w_hat.T + b`` at the quantized-dequantized operands ``x_hat``, ``w_hat``,
zeroed where the input saturated (x outside the input format's range) and where the output saturated.
"""

from __future__ import annotations

import numpy as np
import torch

from asr.compression.qat import Int8LinearFunction, QParams
from nna_emulator import ops, spec
from nna_emulator.runtime import QTensor


def kernel_integer_linear(x_codes, x_q: QParams, w_codes, b_codes, multiplier, out_q: QParams, profile: str):
    """The integer part of :class:`asr.compression.qat.Int8LinearFunction` on the emulator's Numba
    kernel (``nna_emulator.ops.linear``): codes in, codes out."""
    x8 = x_codes.numpy().astype(x_q.fmt.dtype)
    w8 = w_codes.numpy().astype(np.int8)
    b32 = None if b_codes is None else b_codes.numpy().astype(np.int32)
    y = ops.linear(x8, x_q.zero_point, w8, b32, multiplier.numpy(), out_q.zero_point, profile, out_q.fmt)
    return torch.from_numpy(y.astype(np.int64))


def nna_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, x_q: QTensor, out_q: QTensor,
               profile: str = "fixed_point") -> torch.Tensor:
    """The emulated int8 ``torch.nn.functional.linear``: weights int8 symmetric per output channel,
    the bias int32 at ``s_x * s_w``, x quantized with ``x_q``, the output with ``out_q``,
    requantization by ``profile``; forward on the emulator's kernel, backward straight-through
    (:class:`asr.compression.qat.Int8LinearFunction`, whose torch integer core gives the same integers)."""
    return Int8LinearFunction.apply(x, weight, bias, QParams(x_q.scale, x_q.zero_point, x_q.fmt),
                                    QParams(out_q.scale, out_q.zero_point, out_q.fmt), profile, kernel_integer_linear)


def qtensor_for(x: torch.Tensor, fmt: spec.QFormat = spec.INT8, symmetric: bool = False) -> QTensor:
    """Activation quantization parameters covering the range of ``x`` (a calibration helper)."""
    return QTensor(*spec.choose_qparams(float(x.min()), float(x.max()), fmt, symmetric), fmt)
