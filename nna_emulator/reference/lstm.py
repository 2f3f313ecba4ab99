"""Reference LSTM cell: TFLite's 8x8_16 integer step after the gate matmuls."""

from __future__ import annotations

import numpy as np

from nna_emulator import spec
from nna_emulator.reference.activation import lookup


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
