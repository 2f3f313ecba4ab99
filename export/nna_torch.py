"""The torch bridge to the emulated NNA: autograd Functions whose forward runs the integer kernel of
``nna_emulator.ops`` (so the result is exactly what the accelerator computes, dequantized) and whose
backward is the straight-through estimator (STE), so that a model can be trained through the NNA's
numerics (accelerator-aware training).

It lives in ``export/`` because it needs both torch and the kernels: ``nna_emulator`` stays NumPy and
Numba only, and ``asr.compression`` imports the spec but never the kernels (see STYLE.md). A training
recipe that trains through the emulator swaps layers with :func:`nna_linear` from here.

STE, as in fake-quant training (Jacob et al. 2018; Bengio et al. 2013): the forward's rounding is
treated as the identity, clipping is not. So the gradient of ``nna_linear`` is the gradient of the
float layer ``y = x_hat @ w_hat.T + b`` at the quantized-dequantized operands ``x_hat``, ``w_hat``,
zeroed where the input saturated (x outside the input format's range) and where the output saturated.
"""

from __future__ import annotations

import torch

from nna_emulator import ops, spec
from nna_emulator.runtime import QTensor


def _fake(x: torch.Tensor, q: QTensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dequantize(quantize(x)), mask of the elements inside the format's range)."""
    lo, hi = (q.fmt.qmin - q.zero_point) * q.scale, (q.fmt.qmax - q.zero_point) * q.scale
    codes = spec.quantize(x.detach().double().cpu().numpy(), q.scale, q.zero_point, q.fmt)
    return torch.from_numpy(q.dequantize(codes)).to(x.dtype), (x >= lo) & (x <= hi)


class NNALinearFunction(torch.autograd.Function):
    """y = the emulated int8 linear layer on (x, weight, bias), dequantized; STE backward.

    Weights are quantized int8 symmetric per output channel, the bias to int32 at ``s_x * s_w``,
    x with ``x_q``, the output with ``out_q``; requantization follows ``profile``."""

    @staticmethod
    def forward(ctx, x, weight, bias, x_q: QTensor, out_q: QTensor, profile: str = "fixed_point"):
        w = weight.detach().double().cpu().numpy()
        s_w = spec.weight_scales(w, axis=0)
        w_codes = spec.quantize(w, s_w[:, None], 0, spec.INT8_WEIGHT)
        b_codes = None if bias is None else spec.quantize_bias(bias.detach().double().cpu().numpy(), x_q.scale, s_w)
        x2 = x.detach().reshape(-1, x.shape[-1])
        x_codes = spec.quantize(x2.double().cpu().numpy(), x_q.scale, x_q.zero_point, x_q.fmt)
        y_codes = ops.linear(x_codes, x_q.zero_point, w_codes, b_codes, x_q.scale * s_w / out_q.scale, out_q.zero_point,
                             profile, out_q.fmt)
        y = torch.from_numpy(out_q.dequantize(y_codes)).to(x.dtype).reshape(x.shape[:-1] + (weight.shape[0],))
        x_hat, x_inside = _fake(x, x_q)
        w_hat = torch.from_numpy(w_codes * s_w[:, None]).to(weight.dtype)
        out_inside = (y_codes > out_q.fmt.qmin) & (y_codes < out_q.fmt.qmax)
        out_inside = torch.from_numpy(out_inside).reshape(y.shape)
        ctx.save_for_backward(x_hat, w_hat, x_inside, out_inside)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x_hat, w_hat, x_inside, out_inside = ctx.saved_tensors
        g = grad_y * out_inside.to(grad_y.dtype)  # no gradient through output saturation
        g2 = g.reshape(-1, g.shape[-1])
        grad_x = (g @ w_hat) * x_inside.to(g.dtype)  # nor through input clipping
        grad_w = g2.T @ x_hat.reshape(-1, x_hat.shape[-1])
        grad_b = g2.sum(0) if ctx.has_bias else None
        return grad_x, grad_w, grad_b, None, None, None


def nna_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, x_q: QTensor, out_q: QTensor,
               profile: str = "fixed_point") -> torch.Tensor:
    """The emulated int8 ``torch.nn.functional.linear`` (see :class:`NNALinearFunction`)."""
    return NNALinearFunction.apply(x, weight, bias, x_q, out_q, profile)


def qtensor_for(x: torch.Tensor, fmt: spec.QFormat = spec.INT8, symmetric: bool = False) -> QTensor:
    """Activation quantization parameters covering the range of ``x`` (a calibration helper)."""
    return QTensor(*spec.choose_qparams(float(x.min()), float(x.max()), fmt, symmetric), fmt)
