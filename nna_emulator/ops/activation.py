"""Numba twins of ``nna_emulator.reference.activation``: ``lookup`` and ``softmax``."""

from __future__ import annotations

import numba
import numpy as np

from nna_emulator import spec
from nna_emulator.ops.fixed_point import _div_round


@numba.njit(cache=True)
def _lookup(flat, table, offset, out):
    for i in range(flat.size):
        k = np.int64(flat[i]) - offset
        if k < 0 or k >= table.size:
            raise ValueError("lookup: input code outside the table's input format")
        out[i] = table[k]


def lookup(x_q: np.ndarray, table: np.ndarray, in_fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.lookup``."""
    x_q = np.asarray(x_q)
    out = np.empty(x_q.size, dtype=table.dtype)
    _lookup(np.ascontiguousarray(x_q).reshape(-1), table, in_fmt.qmin, out)
    return out.reshape(x_q.shape)


@numba.njit(cache=True)
def _softmax(x, table, out):
    rows, dim = x.shape
    for r in range(rows):
        mx = np.int64(-(1 << 40))
        for k in range(dim):
            mx = max(mx, np.int64(x[r, k]))
        total = np.int64(0)
        for k in range(dim):
            total += table[mx - np.int64(x[r, k])]
        total = max(total, 1)
        for k in range(dim):
            v = _div_round(table[mx - np.int64(x[r, k])] * 256, total) - 128
            out[r, k] = min(max(v, -128), 127)


def softmax(x_q, exp_table) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.softmax``."""
    x_q = np.ascontiguousarray(x_q)
    out = np.empty(x_q.shape, dtype=np.int8)
    if x_q.size:
        _softmax(x_q.reshape(-1, x_q.shape[-1]), np.asarray(exp_table, dtype=np.int64), out.reshape(-1, x_q.shape[-1]))
    return out
