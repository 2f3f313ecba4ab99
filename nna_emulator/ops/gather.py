"""Numba twin of ``nna_emulator.reference.embedding``."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _embedding(ids, table, zero_code, out):
    for i in range(ids.size):
        if ids[i] < 0:
            out[i, :] = zero_code
        else:
            out[i, :] = table[ids[i]]


def embedding(ids, table_q, zero_code: int = 0) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.embedding``."""
    ids = np.asarray(ids, dtype=np.int64)
    table_q = np.ascontiguousarray(table_q)
    if ids.size and ids.max(initial=-1) >= table_q.shape[0]:
        raise IndexError(f"token id {int(ids.max())} outside the {table_q.shape[0]}-row embedding table")
    out = np.empty((ids.size, table_q.shape[1]), dtype=table_q.dtype)
    _embedding(np.ascontiguousarray(ids).reshape(-1), table_q, zero_code, out)
    return out.reshape(ids.shape + (table_q.shape[1],))
