"""Reference integer ops: slow, obviously correct NumPy int64 code, the oracle of the
Numba kernels in ``nna_emulator.ops``. Arithmetic (rounding, saturation, requantization) comes from
``nna_emulator.spec``.

Shape legend: N rows (batch x time), K input features, M output features.

So far: ``linear`` (int8 GEMM + int32 bias + requantization), ``conv1d`` (dilated, grouped /
depthwise, explicit left/right padding, so causal is ``pad_left = dilation * (K - 1)``) and
lookup-table activations (``activation_table`` / ``lookup``). The other ops of issue 4 (conv2d,
add/mul with rescale, LSTM cell, layer norm, softmax, embedding, concat) are not written yet.
"""

from __future__ import annotations

import numpy as np

from nna_emulator import spec


def accumulate(x_q: np.ndarray, x_zp: int, w_q: np.ndarray, bias_q: np.ndarray | None = None) -> np.ndarray:
    """int32 accumulators (N, M) = (x_q - x_zp) @ w_q.T + bias_q, computed exactly in int64.

    x_q (N, K) int8, w_q (M, K) int8 (symmetric, zero point 0), bias_q (M,) int32. Raises if a sum
    leaves int32 (an NNA accumulator would wrap): with int8 operands that needs K > 2^31 / 255^2 ~ 33000."""
    acc = (np.asarray(x_q, dtype=np.int64) - x_zp) @ np.asarray(w_q, dtype=np.int64).T
    if bias_q is not None:
        acc = acc + np.asarray(bias_q, dtype=np.int64)
    return _check_int32(acc, "linear")


def _check_int32(acc: np.ndarray, op: str) -> np.ndarray:
    """An NNA's int32 accumulator would wrap: refuse instead."""
    if acc.size and (acc.min() < spec.INT32_MIN or acc.max() > spec.INT32_MAX):
        raise OverflowError(f"int32 accumulator overflow in {op}: split the reduction (too many int8 products)")
    return acc


def linear(x_q, x_zp: int, w_q, bias_q, multiplier, out_zp: int, profile: str = "fixed_point",
           fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """int8 linear layer: requantize((x_q - x_zp) @ w_q.T + bias_q) -> (N, M) in ``fmt``.

    ``multiplier``: s_x * s_w / s_out, a scalar or (M,) for per-channel weights."""
    return spec.requantize(accumulate(x_q, x_zp, w_q, bias_q), multiplier, out_zp, fmt, profile)


def conv1d(x_q, x_zp: int, w_q, bias_q, multiplier, out_zp: int, dilation: int = 1, groups: int = 1,
           pad_left: int = 0, pad_right: int = 0, profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """int8 1-D convolution. x_q (N, C_in, T), w_q (C_out, C_in / groups, K), bias_q (C_out,) ->
    (N, C_out, T + pad_left + pad_right - dilation * (K - 1)). Padding holds the input zero point
    (a real 0); ``multiplier`` is a scalar or one per output channel."""
    x = np.asarray(x_q, dtype=np.int64) - x_zp  # (N, C_in, T), real zero = 0 from here on
    x = np.pad(x, ((0, 0), (0, 0), (pad_left, pad_right)))
    w = np.asarray(w_q, dtype=np.int64)
    n, c_in, t = x.shape
    c_out, c_per_group, k = w.shape
    t_out = t - dilation * (k - 1)
    out_per_group = c_out // groups
    acc = np.zeros((n, c_out, max(t_out, 0)), dtype=np.int64)
    for co in range(c_out):
        g = co // out_per_group
        for ci in range(c_per_group):
            for j in range(k):
                acc[:, co] += w[co, ci, j] * x[:, g * c_per_group + ci, j * dilation : j * dilation + t_out]
    if bias_q is not None:
        acc += np.asarray(bias_q, dtype=np.int64).reshape(1, c_out, 1)
    _check_int32(acc, "conv1d")
    out = spec.requantize(acc.transpose(0, 2, 1), multiplier, out_zp, fmt, profile)  # per-channel on the last axis
    return out.transpose(0, 2, 1)


def activation_table(fn, in_scale: float, in_zp: int, out_scale: float, out_zp: int,
                     in_fmt: spec.QFormat = spec.INT8, out_fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """The lookup table of an elementwise function over every input code: entry i is
    quantize(fn(dequantize(in_fmt.qmin + i))) with half-to-even rounding. An int8 table has 256
    entries, an int16 one 65536 (sigmoid/tanh of the LSTM gates). Inside the output range the only
    error is the output rounding: at most half an output LSB against fn on the dequantized input
    (outside it, saturation)."""
    codes = np.arange(in_fmt.qmin, in_fmt.qmax + 1, dtype=np.int64)
    return spec.quantize(fn(spec.dequantize(codes, in_scale, in_zp)), out_scale, out_zp, out_fmt)


def lookup(x_q: np.ndarray, table: np.ndarray, in_fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Apply an ``activation_table`` elementwise."""
    return table[np.asarray(x_q, dtype=np.int64) - in_fmt.qmin]
