"""The Numba fixed-point helpers shared by the kernels: ``spec``'s SRDHM and RoundingDivideByPOT on
int64 scalars, the requantization of one accumulator (both profiles) and its per-channel
parameters, rounded division.

The kernels of the other modules inline these helpers, and Numba's ``cache=True`` keys a cached
kernel on its own source file only: ``nna_emulator.ops`` deletes the cached kernels older than this
module (or ``spec``) before it imports them.
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


def _requant_params(multiplier, m: int, profile: str):
    if profile not in spec.PROFILES:
        raise ValueError(f"profile={profile!r}: use one of {', '.join(spec.PROFILES)}")
    fixed = profile == "fixed_point"
    m0, shift = spec.quantize_multipliers(multiplier, m) if fixed else (np.zeros(m, np.int64), np.zeros(m, np.int64))
    return fixed, m0, shift, np.broadcast_to(np.asarray(multiplier, dtype=np.float32), (m,)).copy()


@numba.njit(cache=True, inline="always")
def _div_round(num, den):
    q = (2 * abs(num) + den) // (2 * den)
    return -q if num < 0 else q
