"""Numba kernels, bit-exact twins of ``nna_emulator.reference`` (tested over random inputs and edge
cases). The arithmetic mirrors ``nna_emulator.spec`` step for step in int64.

So far: ``linear`` (both requantization profiles) and ``lookup``; see the reference package for
what is still missing.
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


@numba.njit(cache=True)
def _linear_fixed(x_q, x_zp, w_q, bias_q, m0, shift, out_zp, qmin, qmax, out):
    n, k = x_q.shape
    m = w_q.shape[0]
    for i in range(n):
        for j in range(m):
            acc = np.int64(bias_q[j])
            for t in range(k):
                acc += (np.int64(x_q[i, t]) - x_zp) * np.int64(w_q[j, t])
            if acc < _INT32_MIN or acc > _INT32_MAX:
                raise OverflowError("int32 accumulator overflow")
            left = shift[j] if shift[j] > 0 else 0
            right = -shift[j] if shift[j] < 0 else 0
            v = acc << left
            v = min(max(v, _INT32_MIN), _INT32_MAX)
            v = _rdbpot(_srdhm(v, np.int64(m0[j])), right) + out_zp
            out[i, j] = min(max(v, qmin), qmax)


@numba.njit(cache=True)
def _linear_float(x_q, x_zp, w_q, bias_q, mult, out_zp, qmin, qmax, out):
    n, k = x_q.shape
    m = w_q.shape[0]
    for i in range(n):
        for j in range(m):
            acc = np.int64(bias_q[j])
            for t in range(k):
                acc += (np.int64(x_q[i, t]) - x_zp) * np.int64(w_q[j, t])
            if acc < _INT32_MIN or acc > _INT32_MAX:
                raise OverflowError("int32 accumulator overflow")
            y = np.float32(acc) * mult[j]
            v = np.int64(np.rint(y)) + out_zp
            out[i, j] = min(max(v, qmin), qmax)


def linear(x_q, x_zp: int, w_q, bias_q, multiplier, out_zp: int, profile: str = "fixed_point",
           fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.linear``."""
    x_q, w_q = np.ascontiguousarray(x_q), np.ascontiguousarray(w_q)
    m = w_q.shape[0]
    bias = np.zeros(m, dtype=np.int64) if bias_q is None else np.asarray(bias_q, dtype=np.int64)
    mult = np.broadcast_to(np.asarray(multiplier, dtype=np.float64), (m,))
    out = np.empty((x_q.shape[0], m), dtype=fmt.dtype)
    if profile == "fixed_point":
        pairs = [spec.quantize_multiplier(float(v)) for v in mult]
        m0 = np.array([p[0] for p in pairs], dtype=np.int64)
        shift = np.array([p[1] for p in pairs], dtype=np.int64)
        _linear_fixed(x_q, np.int64(x_zp), w_q, bias, m0, shift, np.int64(out_zp), fmt.qmin, fmt.qmax, out)
    elif profile == "onnxruntime":
        _linear_float(x_q, np.int64(x_zp), w_q, bias, mult.astype(np.float32), np.int64(out_zp), fmt.qmin, fmt.qmax, out)
    else:
        raise ValueError(f"profile={profile!r}: use one of {', '.join(spec.PROFILES)}")
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
