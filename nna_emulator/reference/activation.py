"""Reference activations: lookup tables over every input code (``activation_table``, ``lookup``)
and the integer ``softmax`` with its exp table.
"""

from __future__ import annotations

import numpy as np

from nna_emulator import spec


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


def softmax_exp_table(x_scale: float) -> np.ndarray:
    """round(exp(-k s_x) 2^15) for k = 0..255: the exp of every possible int8 difference to the max."""
    return np.rint(np.exp(-np.arange(256) * x_scale) * 2**spec.SOFTMAX_EXP_BITS).astype(np.int64)


def softmax(x_q, exp_table) -> np.ndarray:
    """Softmax over the last axis of int8 codes -> int8 probabilities at scale 1/256, zero point
    -128 (TFLite's output format; p = 1 saturates to 127/256 + 1/2).
        e = exp_table[max - x];  out = round(256 e / sum e) - 128  (half away from zero)
    Error against float softmax of the dequantized input: the table's half a 2^-15 step per term
    (relative 2^-16 / p) and the output rounding (half of 1/256)."""
    x = np.asarray(x_q, dtype=np.int64)
    e = np.asarray(exp_table, dtype=np.int64)[x.max(axis=-1, keepdims=True) - x]
    total = e.sum(axis=-1, keepdims=True)
    return np.clip(spec.divide_round_half_away(e * 256, np.maximum(total, 1)) - 128, -128, 127).astype(np.int8)
