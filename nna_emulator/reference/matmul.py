"""Reference linear layer: exact int64 accumulation, the int32 overflow check of every reduction,
requantization.
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
    return spec.check_int32(acc, "linear")


def linear(x_q, x_zp: int, w_q, bias_q, multiplier, out_zp: int, profile: str = "fixed_point",
           fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """int8 linear layer: requantize((x_q - x_zp) @ w_q.T + bias_q) -> (N, M) in ``fmt``.

    ``multiplier``: s_x * s_w / s_out, a scalar or (M,) for per-channel weights."""
    return spec.requantize(accumulate(x_q, x_zp, w_q, bias_q), multiplier, out_zp, fmt, profile)
