"""Numba twin of ``nna_emulator.reference.matmul``: an int32 fast path for int8 operands, an int64
one for any K, a row-wise requantization.
"""

from __future__ import annotations

import numba
import numpy as np

from nna_emulator import spec
from nna_emulator.ops.fixed_point import _INT32_MAX, _INT32_MIN, _rdbpot, _requant_params, _srdhm


@numba.njit(cache=True)
def _accumulate(x_q, x_zp, w_q, acc):
    """int64 accumulation: any K."""
    n, k = x_q.shape
    m = w_q.shape[0]
    for i in range(n):
        for j in range(m):
            a = np.int64(0)
            for t in range(k):
                a += (np.int64(x_q[i, t]) - x_zp) * np.int64(w_q[j, t])
            acc[i, j] = a


_BLOCK_ROWS = 16  # rows of x that share one pass over a weight row (kept in L1)


@numba.njit(cache=True)
def _accumulate_int32(xs, w_q, acc):
    """The fast path: int16 (x - zp) times int8 weights summed in int32, exact because
    K * 255 * 128 < 2^31 (checked by the caller); the loop over K vectorizes (AVX2), and blocks of
    rows reuse each weight row from L1."""
    n, k = xs.shape
    m = w_q.shape[0]
    for i0 in range(0, n, _BLOCK_ROWS):
        i1 = min(i0 + _BLOCK_ROWS, n)
        for j in range(m):
            for i in range(i0, i1):
                a = np.int32(0)
                for t in range(k):
                    a += np.int32(xs[i, t]) * np.int32(w_q[j, t])
                acc[i, j] = a


@numba.njit(cache=True)
def _requant_rows(acc, bias, fixed, m0, shift, mult, out_zp, qmin, qmax, out):
    """``spec.requantize`` of (R, M) accumulators + bias, channel j on the last axis; the
    profile branch and the shifts are hoisted out of the element loop (20x faster than ``_requant``
    per element). Returns False if an accumulator left int32 (the caller raises)."""
    rows, m = acc.shape
    ok = True
    for i in range(rows):
        for j in range(m):
            v = np.int64(acc[i, j]) + bias[j]
            if v < _INT32_MIN or v > _INT32_MAX:
                ok = False
            if fixed:
                left = shift[j] if shift[j] > 0 else 0
                right = -shift[j] if shift[j] < 0 else 0
                v = min(max(v << left, _INT32_MIN), _INT32_MAX)
                q = _rdbpot(_srdhm(v, m0[j]), right)
            else:
                q = np.int64(np.rint(np.float32(v) * mult[j]))
            out[i, j] = min(max(q + out_zp, qmin), qmax)
    return ok


def linear(x_q, x_zp: int, w_q, bias_q, multiplier, out_zp: int, profile: str = "fixed_point",
           fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.linear``."""
    x_q, w_q = np.ascontiguousarray(x_q), np.ascontiguousarray(w_q)
    m, k = w_q.shape
    n = x_q.shape[0]
    bias = np.zeros(m, dtype=np.int64) if bias_q is None else np.asarray(bias_q, dtype=np.int64)
    fixed, m0, shift, mult = _requant_params(multiplier, m, profile)
    if x_q.dtype == np.int8 and w_q.dtype == np.int8 and k * 255 * 128 < 2**31 and -128 <= x_zp <= 127:
        acc = np.empty((n, m), dtype=np.int32)
        _accumulate_int32(x_q.astype(np.int16) - np.int16(x_zp), w_q, acc)
    else:
        acc = np.empty((n, m), dtype=np.int64)
        _accumulate(x_q, np.int64(x_zp), w_q, acc)
    out = np.empty((n, m), dtype=fmt.dtype)
    if not _requant_rows(acc, bias, fixed, m0, shift, mult, np.int64(out_zp), fmt.qmin, fmt.qmax, out):
        raise OverflowError("int32 accumulator overflow in linear: split the reduction (too many int8 products)")
    return out
