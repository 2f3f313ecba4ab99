"""Reference integer ops: slow, obviously correct NumPy int64 code, the oracle of the
Numba kernels in ``nna_emulator.ops``. Arithmetic (rounding, saturation, requantization) comes from
``nna_emulator.spec``.

Shape legend: N rows (batch x time), K input features, M output features.

Ops: ``linear`` (int8 GEMM + int32 bias + requantization); ``conv1d`` (dilated, grouped /
depthwise, explicit left/right padding, so causal is ``pad_left = dilation * (K - 1)``); ``conv2d``
(strided, padded, grouped); ``add`` and ``mul`` with rescale; ``clip`` (ReLU / ReLU6 / hard tanh);
lookup-table activations (``activation_table`` / ``lookup``: sigmoid, tanh, SiLU... over an int8 or
int16 input); ``lstm_cell`` (int16 gates and cell state); ``layer_norm`` and ``softmax`` in integer
arithmetic; ``embedding``; ``concat``. Each docstring states its arithmetic and, where it is not
exact, its error against float.
"""

from __future__ import annotations

import math

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
    """Apply an ``activation_table`` elementwise (``x_q`` must hold codes of ``in_fmt``)."""
    k = np.asarray(x_q, dtype=np.int64) - in_fmt.qmin
    if k.size and (k.min() < 0 or k.max() >= len(table)):
        raise ValueError("lookup: input code outside the table's input format")
    return table[k]


def conv2d(x_q, x_zp: int, w_q, bias_q, multiplier, out_zp: int, stride=(1, 1), padding=(0, 0), groups: int = 1,
           profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """int8 2-D convolution (torch's Conv2d layout). x_q (N, C_in, H, W), w_q (C_out, C_in / groups,
    KH, KW), bias_q (C_out,); ``padding`` (ph, pw) on both sides of each axis holds the input zero
    point (a real 0) -> (N, C_out, (H + 2 ph - KH) // sh + 1, (W + 2 pw - KW) // sw + 1)."""
    (sh, sw), (ph, pw) = stride, padding
    x = np.pad(np.asarray(x_q, dtype=np.int64) - x_zp, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    w = np.asarray(w_q, dtype=np.int64)
    n, c_in, h, wd = x.shape
    c_out, c_per_group, kh, kw = w.shape
    h_out, w_out = max((h - kh) // sh + 1, 0), max((wd - kw) // sw + 1, 0)
    out_per_group = c_out // groups
    acc = np.zeros((n, c_out, h_out, w_out), dtype=np.int64)
    for co in range(c_out):
        g = co // out_per_group
        for ci in range(c_per_group):
            for i in range(kh):
                for j in range(kw):
                    window = x[:, g * c_per_group + ci, i : i + sh * (h_out - 1) + 1 : sh, j : j + sw * (w_out - 1) + 1 : sw]
                    acc[:, co] += w[co, ci, i, j] * window
    if bias_q is not None:
        acc += np.asarray(bias_q, dtype=np.int64).reshape(1, c_out, 1, 1)
    _check_int32(acc, "conv2d")
    return spec.requantize(acc.transpose(0, 2, 3, 1), multiplier, out_zp, fmt, profile).transpose(0, 3, 1, 2)


ADD_LEFT_SHIFT = 20  # TFLite's int8 Add: inputs are scaled up by 2^20 before their multipliers


def add_params(a_scale: float, b_scale: float, out_scale: float) -> tuple[float, float, float]:
    """TFLite's Add rescaling: real multipliers (a, b, out) = (s_a / 2 max, s_b / 2 max,
    2 max / (2^20 s_out)) with max = max(s_a, s_b), so both input multipliers are at most 1/2."""
    twice_max = 2.0 * max(a_scale, b_scale)
    return a_scale / twice_max, b_scale / twice_max, twice_max / ((1 << ADD_LEFT_SHIFT) * out_scale)


def add(a_q, a_scale: float, a_zp: int, b_q, b_scale: float, b_zp: int, out_scale: float, out_zp: int,
        profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Elementwise a + b of two int8 tensors (broadcasting) at their own scales, into ``fmt``.

    fixed_point (TFLite's quantized Add): each (q - zp) is shifted left by 20 bits, multiplied by its
    quantized multiplier from ``add_params``, the two are summed and the sum requantized by the output
    multiplier; three roundings, so the result is within 1 code of round(real sum / s_out).
    onnxruntime: float32 (a - z_a) * (s_a / s_o) + (b - z_b) * (s_b / s_o), rounded half to even."""
    a = np.asarray(a_q, dtype=np.int64) - a_zp
    b = np.asarray(b_q, dtype=np.int64) - b_zp
    if profile == "fixed_point":
        ma, mb, mo = add_params(a_scale, b_scale, out_scale)
        sa = spec.multiply_by_quantized_multiplier(a << ADD_LEFT_SHIFT, *spec.quantize_multiplier(ma))
        sb = spec.multiply_by_quantized_multiplier(b << ADD_LEFT_SHIFT, *spec.quantize_multiplier(mb))
        out = spec.multiply_by_quantized_multiplier(sa + sb, *spec.quantize_multiplier(mo))
    elif profile == "onnxruntime":
        y = a.astype(np.float32) * np.float32(a_scale / out_scale) + b.astype(np.float32) * np.float32(b_scale / out_scale)
        out = np.rint(y).astype(np.int64)
    else:
        raise ValueError(f"profile={profile!r}: use one of {', '.join(spec.PROFILES)}")
    return np.clip(out + out_zp, fmt.qmin, fmt.qmax).astype(fmt.dtype)


def mul(a_q, a_scale: float, a_zp: int, b_q, b_scale: float, b_zp: int, out_scale: float, out_zp: int,
        profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Elementwise a * b (broadcasting): the exact product (a - z_a)(b - z_b) requantized by
    s_a s_b / s_out (``spec.requantize``)."""
    acc = (np.asarray(a_q, dtype=np.int64) - a_zp) * (np.asarray(b_q, dtype=np.int64) - b_zp)
    return spec.requantize(acc, a_scale * b_scale / out_scale, out_zp, fmt, profile)


def clip(x_q, lo: int, hi: int) -> np.ndarray:
    """Clamp codes to [lo, hi] (same scale in and out): ReLU is ``lo = zero point``; ReLU6 and hard
    tanh also set ``hi`` to the code of 6 or 1. Exact."""
    x_q = np.asarray(x_q)
    return np.clip(x_q, lo, hi).astype(x_q.dtype)


def lstm_cell(gates_q, c_q, cell_frac_bits: int, sigmoid_table, tanh_table, tanh_cell_table,
              h_multiplier: float, h_zp: int, profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8):
    """One LSTM step after the gate matmuls (TFLite's 8x8_16 integer LSTM, without peepholes).

    gates_q (N, 4H) int16 in Q3.12 (scale 2^-12; torch's order i, f, g, o), the sum of the input and
    recurrent matmuls requantized to int16; c_q (N, H) int16 at scale 2^-cell_frac_bits. The three
    tables (``activation_table`` over the int16 input range) map Q3.12 -> Q0.15 (sigmoid, tanh) and
    the cell scale -> Q0.15 (tanh of the cell). Then, with RDBP = ``spec.rounding_divide_by_pot``:
        c' = sat16(RDBP(f * c, 15) + RDBP(i * g, 30 - cell_frac_bits))
        h' = requantize(o * tanh(c'), 2^-30 / s_h) in ``fmt`` with zero point ``h_zp``
    Returns (h' (N, H), c' (N, H) int16). Errors against float: the gate requantization (2^-13),
    the tables (half a Q0.15 LSB) and one rounding per product; saturation of |gates| >= 8 (where
    sigmoid and tanh are flat to 3e-4) and of the cell at its calibrated range."""
    if not 0 <= cell_frac_bits <= 30:
        raise ValueError(f"cell_frac_bits={cell_frac_bits}: must be in 0..30")
    g = np.asarray(gates_q, dtype=np.int64)
    h = g.shape[-1] // 4
    i_g, f_g, g_g, o_g = (lookup(g[..., k * h : (k + 1) * h], table, spec.INT16).astype(np.int64)
                          for k, table in enumerate((sigmoid_table, sigmoid_table, tanh_table, sigmoid_table)))
    c = np.asarray(c_q, dtype=np.int64)
    c_new = spec.rounding_divide_by_pot(f_g * c, 15) + spec.rounding_divide_by_pot(i_g * g_g, 30 - cell_frac_bits)
    c_new = np.clip(c_new, spec.INT16.qmin, spec.INT16.qmax)
    tanh_c = lookup(c_new, tanh_cell_table, spec.INT16).astype(np.int64)
    h_new = spec.requantize(o_g * tanh_c, h_multiplier, h_zp, fmt, profile)
    return h_new, c_new.astype(np.int16)


LN_FRAC_BITS = 12  # the normalised value z is held in Q.12
_LN_EXTRA_BITS = 8  # extra precision of the integer standard deviation


def layer_norm_eps(eps: float, x_scale: float, dim: int) -> int:
    """The integer epsilon of ``layer_norm``: eps in (code units)^2, times dim^2."""
    return int(round(eps / x_scale**2 * dim**2))


def _div_round(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den rounded half away from zero, den > 0, exact in int64."""
    q = (2 * np.abs(num) + den) // (2 * den)
    return np.where(num < 0, -q, q)


def layer_norm(x_q, x_zp: int, gamma_q, beta_q, multiplier, out_zp: int, eps_int: int,
               profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Layer norm over the last axis (D) in integer arithmetic. With x = q - zp (int64):
        S = sum x;  d = D x - S  (= D (x - mean), exact)
        V = (sum d^2) // D + eps_int  (= D^2 (var + eps / s_x^2); eps_int from ``layer_norm_eps``)
        r = isqrt(V * 2^16)   (floor square root: 256 D std)
        z = round(d * 2^(12 + 8) / r)  (Q.12: (x - mean) / std * 4096, half away from zero)
        out = requantize(z * gamma_q + beta_q, multiplier)  (beta int32 at scale 2^-12 s_gamma,
              multiplier 2^-12 s_gamma / s_out; gamma int8 per tensor)
    Error against float layer norm on the dequantized input: the floor square root (relative
    1 / r, below 1e-4 for any D >= 4 with a spread of a few codes), half a Q.12 step in z, the int8
    gamma and the output rounding. D up to 4096 keeps every product inside int64."""
    x = np.asarray(x_q, dtype=np.int64) - x_zp
    dim = x.shape[-1]
    if dim > 4096:
        raise ValueError(f"layer_norm over {dim} features: at most 4096 fit the int64 arithmetic")
    d = dim * x - x.sum(axis=-1, keepdims=True)
    v = (d * d).sum(axis=-1, keepdims=True) // dim + eps_int
    r = np.vectorize(lambda a: math.isqrt(int(a)), otypes=[np.int64])(v << (2 * _LN_EXTRA_BITS)) if v.size else v
    z = np.where(r > 0, _div_round(d << (LN_FRAC_BITS + _LN_EXTRA_BITS), np.maximum(r, 1)), 0)
    acc = z * np.asarray(gamma_q, dtype=np.int64) + np.asarray(beta_q, dtype=np.int64)
    _check_int32(acc, "layer_norm")
    return spec.requantize(acc, multiplier, out_zp, fmt, profile)


SOFTMAX_EXP_BITS = 15  # exp table entries in Q0.15


def softmax_exp_table(x_scale: float) -> np.ndarray:
    """round(exp(-k s_x) 2^15) for k = 0..255: the exp of every possible int8 difference to the max."""
    return np.rint(np.exp(-np.arange(256) * x_scale) * 2**SOFTMAX_EXP_BITS).astype(np.int64)


def softmax(x_q, exp_table) -> np.ndarray:
    """Softmax over the last axis of int8 codes -> int8 probabilities at scale 1/256, zero point
    -128 (TFLite's output format; p = 1 saturates to 127/256 + 1/2).
        e = exp_table[max - x];  out = round(256 e / sum e) - 128  (half away from zero)
    Error against float softmax of the dequantized input: the table's half a 2^-15 step per term
    (relative 2^-16 / p) and the output rounding (half of 1/256)."""
    x = np.asarray(x_q, dtype=np.int64)
    e = np.asarray(exp_table, dtype=np.int64)[x.max(axis=-1, keepdims=True) - x]
    total = e.sum(axis=-1, keepdims=True)
    return np.clip(_div_round(e * 256, np.maximum(total, 1)) - 128, -128, 127).astype(np.int8)


def embedding(ids, table_q, zero_code: int = 0) -> np.ndarray:
    """Rows of an int8 table (V, D) for integer ids of any shape -> ids.shape + (D,). A negative id
    (sherpa-onnx's "no token yet" context) gives a row of ``zero_code`` (the code of a real 0)."""
    ids = np.asarray(ids, dtype=np.int64)
    table_q = np.asarray(table_q)
    if ids.size and ids.max(initial=-1) >= table_q.shape[0]:
        raise IndexError(f"token id {int(ids.max())} outside the {table_q.shape[0]}-row embedding table")
    out = table_q[np.maximum(ids, 0)]
    out[ids < 0] = zero_code
    return out


def concat(inputs, out_scale: float, out_zp: int, axis: int = -1, profile: str = "fixed_point",
           fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Concatenate (q, scale, zero_point) tensors along ``axis`` into one output scale: an input whose
    scale and zero point already match is copied; any other is requantized ((q - zp) by s / s_out)."""
    parts = []
    for q, scale, zp in inputs:
        q = np.asarray(q)
        if scale == out_scale and zp == out_zp and q.dtype == fmt.dtype:
            parts.append(q)
        else:
            parts.append(spec.requantize(q.astype(np.int64) - zp, scale / out_scale, out_zp, fmt, profile))
    return np.concatenate(parts, axis=axis)
