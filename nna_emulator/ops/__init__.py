"""Numba kernels, bit-exact twins of ``nna_emulator.reference`` (tested over random inputs and edge
cases). The arithmetic mirrors ``nna_emulator.spec`` step for step in int64.

So far: ``linear`` and ``conv1d`` (both requantization profiles) and ``lookup``; see the reference
package for what is still missing.
"""

from __future__ import annotations

import numba
import numpy as np

from nna_emulator import spec

_INT32_MIN, _INT32_MAX = spec.INT32_MIN, spec.INT32_MAX


@numba.njit(cache=True, inline="always")
def _srdhm(a, b):
    if a == _INT32_MIN and b == _INT32_MIN:
        return _INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    num = ab + nudge
    return num >> 31 if num >= 0 else -((-num) >> 31)


@numba.njit(cache=True, inline="always")
def _rdbpot(x, exponent):
    if exponent == 0:
        return x
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


@numba.njit(cache=True, inline="always")
def _requant(acc, j, fixed, m0, shift, mult, out_zp, qmin, qmax):
    """One accumulator of output channel j -> saturated output code (spec.requantize, both profiles)."""
    if acc < _INT32_MIN or acc > _INT32_MAX:
        raise OverflowError("int32 accumulator overflow")
    if fixed:
        left = shift[j] if shift[j] > 0 else 0
        right = -shift[j] if shift[j] < 0 else 0
        v = min(max(acc << left, _INT32_MIN), _INT32_MAX)
        v = _rdbpot(_srdhm(v, np.int64(m0[j])), right) + out_zp
    else:
        v = np.int64(np.rint(np.float32(acc) * mult[j])) + out_zp
    return min(max(v, qmin), qmax)


@numba.njit(cache=True)
def _conv1d(x, x_zp, w, bias, dilation, groups, pad_left, t_out, fixed, m0, shift, mult, out_zp, qmin, qmax, out):
    n, c_in, t = x.shape
    c_out, c_per_group, k = w.shape
    out_per_group = c_out // groups
    for b in range(n):
        for co in range(c_out):
            g = co // out_per_group
            for s in range(t_out):
                acc = np.int64(bias[co])
                for ci in range(c_per_group):
                    for j in range(k):
                        src = s + j * dilation - pad_left
                        if 0 <= src < t:  # padding holds the zero point: contributes 0
                            acc += (np.int64(x[b, g * c_per_group + ci, src]) - x_zp) * np.int64(w[co, ci, j])
                out[b, co, s] = _requant(acc, co, fixed, m0, shift, mult, out_zp, qmin, qmax)


def _requant_params(multiplier, m: int, profile: str):
    if profile not in spec.PROFILES:
        raise ValueError(f"profile={profile!r}: use one of {', '.join(spec.PROFILES)}")
    fixed = profile == "fixed_point"
    m0, shift = spec.quantize_multipliers(multiplier, m) if fixed else (np.zeros(m, np.int64), np.zeros(m, np.int64))
    return fixed, m0, shift, np.broadcast_to(np.asarray(multiplier, dtype=np.float32), (m,)).copy()


def conv1d(x_q, x_zp: int, w_q, bias_q, multiplier, out_zp: int, dilation: int = 1, groups: int = 1,
           pad_left: int = 0, pad_right: int = 0, profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.conv1d``."""
    x_q, w_q = np.ascontiguousarray(x_q), np.ascontiguousarray(w_q)
    c_out, _, k = w_q.shape
    t_out = max(x_q.shape[2] + pad_left + pad_right - dilation * (k - 1), 0)
    bias = np.zeros(c_out, dtype=np.int64) if bias_q is None else np.asarray(bias_q, dtype=np.int64)
    fixed, m0, shift, mult = _requant_params(multiplier, c_out, profile)
    out = np.empty((x_q.shape[0], c_out, t_out), dtype=fmt.dtype)
    _conv1d(x_q, np.int64(x_zp), w_q, bias, dilation, groups, pad_left, t_out, fixed, m0, shift, mult,
            np.int64(out_zp), fmt.qmin, fmt.qmax, out)
    return out


@numba.njit(cache=True)
def _linear(x_q, x_zp, w_q, bias_q, fixed, m0, shift, mult, out_zp, qmin, qmax, out):
    n, k = x_q.shape
    m = w_q.shape[0]
    for i in range(n):
        for j in range(m):
            acc = np.int64(bias_q[j])
            for t in range(k):
                acc += (np.int64(x_q[i, t]) - x_zp) * np.int64(w_q[j, t])
            out[i, j] = _requant(acc, j, fixed, m0, shift, mult, out_zp, qmin, qmax)


def linear(x_q, x_zp: int, w_q, bias_q, multiplier, out_zp: int, profile: str = "fixed_point",
           fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.linear``."""
    x_q, w_q = np.ascontiguousarray(x_q), np.ascontiguousarray(w_q)
    m = w_q.shape[0]
    bias = np.zeros(m, dtype=np.int64) if bias_q is None else np.asarray(bias_q, dtype=np.int64)
    fixed, m0, shift, mult = _requant_params(multiplier, m, profile)
    out = np.empty((x_q.shape[0], m), dtype=fmt.dtype)
    _linear(x_q, np.int64(x_zp), w_q, bias, fixed, m0, shift, mult, np.int64(out_zp), fmt.qmin, fmt.qmax, out)
    return out


@numba.njit(cache=True)
def _lookup(flat, table, offset, out):
    for i in range(flat.size):
        out[i] = table[np.int64(flat[i]) - offset]


def lookup(x_q: np.ndarray, table: np.ndarray, in_fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.lookup``."""
    x_q = np.asarray(x_q)
    out = np.empty(x_q.size, dtype=table.dtype)
    _lookup(np.ascontiguousarray(x_q).reshape(-1), table, in_fmt.qmin, out)
    return out.reshape(x_q.shape)
