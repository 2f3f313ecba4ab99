"""Numba twin of ``nna_emulator.reference.norm``: ``layer_norm`` (with an exact integer square root)."""

from __future__ import annotations

import numba
import numpy as np

from nna_emulator import spec
from nna_emulator.ops.fixed_point import _div_round, _requant, _requant_params


@numba.njit(cache=True, inline="always")
def _isqrt(v):
    """floor(sqrt(v)) for 0 <= v < 2^62, exactly (Newton's method from above)."""
    if v < 2:
        return v
    x = np.int64(np.sqrt(np.float64(v))) + 1  # within a few units; Newton then settles on the floor
    while x * x > v:
        x = (x + v // x) // 2
    while (x + 1) * (x + 1) <= v:
        x += 1
    return x


@numba.njit(cache=True)
def _layer_norm(x, x_zp, gamma, beta, eps_int, frac, extra, fixed, m0, shift, mult, out_zp, qmin, qmax, out):
    rows, dim = x.shape
    d = np.empty(dim, np.int64)
    for r in range(rows):
        s = np.int64(0)
        for k in range(dim):
            s += np.int64(x[r, k]) - x_zp
        ss = np.int64(0)
        for k in range(dim):
            d[k] = dim * (np.int64(x[r, k]) - x_zp) - s
            ss += d[k] * d[k]
        root = _isqrt((ss // dim + eps_int) << (2 * extra))
        for k in range(dim):
            z = _div_round(d[k] << (frac + extra), root) if root > 0 else np.int64(0)
            acc = z * np.int64(gamma[k]) + np.int64(beta[k])
            out[r, k] = _requant(acc, 0, fixed, m0, shift, mult, out_zp, qmin, qmax)


def layer_norm(x_q, x_zp: int, gamma_q, beta_q, multiplier, out_zp: int, eps_int: int,
               profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.layer_norm``."""
    x_q = np.ascontiguousarray(x_q)
    dim = x_q.shape[-1]
    if dim > 4096:
        raise ValueError(f"layer_norm over {dim} features: at most 4096 fit the int64 arithmetic")
    gamma = np.broadcast_to(np.asarray(gamma_q, dtype=np.int64), (dim,)).copy()
    beta = np.broadcast_to(np.asarray(beta_q, dtype=np.int64), (dim,)).copy()
    fixed, m0, shift, mult = _requant_params(multiplier, 1, profile)
    out = np.empty(x_q.shape, dtype=fmt.dtype)
    _layer_norm(x_q.reshape(-1, dim), np.int64(x_zp), gamma, beta, np.int64(eps_int), spec.LN_FRAC_BITS,
                spec.LN_EXTRA_BITS, fixed, m0, shift, mult, np.int64(out_zp), fmt.qmin, fmt.qmax, out.reshape(-1, dim))
    return out
