"""Numba twin of ``nna_emulator.reference.lstm``: ``lstm_cell``."""

from __future__ import annotations

import numba
import numpy as np

from nna_emulator import spec
from nna_emulator.ops.fixed_point import _rdbpot, _requant, _requant_params


@numba.njit(cache=True)
def _lstm_cell(gates, c, cell_frac_bits, sig, tanh, tanh_c, fixed, m0, shift, mult, h_zp, qmin, qmax, h_out, c_out):
    n, four_h = gates.shape
    h = four_h // 4
    off = 32767  # INT16 (narrow) qmin = -32767
    for b in range(n):
        for k in range(4 * h):
            if gates[b, k] < -32767:
                raise ValueError("lstm_cell: gate code -32768 is outside the int16 (narrow) format")
        for k in range(h):
            ig = np.int64(sig[np.int64(gates[b, k]) + off])
            fg = np.int64(sig[np.int64(gates[b, h + k]) + off])
            gg = np.int64(tanh[np.int64(gates[b, 2 * h + k]) + off])
            og = np.int64(sig[np.int64(gates[b, 3 * h + k]) + off])
            v = _rdbpot(fg * np.int64(c[b, k]), 15) + _rdbpot(ig * gg, 30 - cell_frac_bits)
            v = min(max(v, -32767), 32767)
            c_out[b, k] = v
            tc = np.int64(tanh_c[v + off])
            h_out[b, k] = _requant(og * tc, 0, fixed, m0, shift, mult, h_zp, qmin, qmax)


def lstm_cell(gates_q, c_q, cell_frac_bits: int, sigmoid_table, tanh_table, tanh_cell_table,
              h_multiplier: float, h_zp: int, profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8):
    """Numba twin of ``nna_emulator.reference.lstm_cell``."""
    if not 0 <= cell_frac_bits <= 30:
        raise ValueError(f"cell_frac_bits={cell_frac_bits}: must be in 0..30")
    gates_q = np.ascontiguousarray(gates_q, dtype=np.int16)
    c_q = np.ascontiguousarray(c_q, dtype=np.int16)
    fixed, m0, shift, mult = _requant_params(h_multiplier, 1, profile)
    h_out = np.empty(c_q.shape, dtype=fmt.dtype)
    c_out = np.empty(c_q.shape, dtype=np.int16)
    _lstm_cell(gates_q.reshape(-1, gates_q.shape[-1]), c_q.reshape(-1, c_q.shape[-1]), cell_frac_bits, sigmoid_table,
               tanh_table, tanh_cell_table, fixed, m0, shift, mult, np.int64(h_zp), fmt.qmin, fmt.qmax,
               h_out.reshape(-1, c_q.shape[-1]), c_out.reshape(-1, c_q.shape[-1]))
    return h_out, c_out
