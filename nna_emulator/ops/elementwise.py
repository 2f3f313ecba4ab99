"""Numba twins of ``nna_emulator.reference.elementwise``: ``add``, ``mul``, ``clip`` and ``concat``."""

from __future__ import annotations

import numba
import numpy as np

from nna_emulator import spec
from nna_emulator.ops.fixed_point import _INT32_MAX, _requant, _requant_params


def _broadcast_flat(a, b):
    a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
    return np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1), a.shape


@numba.njit(cache=True)
def _add_fixed(a, a_zp, b, b_zp, ma, sa, mb, sb, mo, so, out_zp, qmin, qmax, out):
    ma_, sa_ = np.full(1, ma, np.int64), np.full(1, sa, np.int64)
    mb_, sb_ = np.full(1, mb, np.int64), np.full(1, sb, np.int64)
    mo_, so_ = np.full(1, mo, np.int64), np.full(1, so, np.int64)
    fz = np.zeros(1, np.float32)
    big = np.int64(_INT32_MAX)
    for i in range(a.size):
        va = _requant((np.int64(a[i]) - a_zp) << spec.ADD_LEFT_SHIFT, 0, True, ma_, sa_, fz, 0, -big - 1, big)
        vb = _requant((np.int64(b[i]) - b_zp) << spec.ADD_LEFT_SHIFT, 0, True, mb_, sb_, fz, 0, -big - 1, big)
        out[i] = _requant(va + vb, 0, True, mo_, so_, fz, out_zp, qmin, qmax)


@numba.njit(cache=True)
def _add_float(a, a_zp, b, b_zp, ra, rb, out_zp, qmin, qmax, out):
    for i in range(a.size):
        y = np.float32(np.int64(a[i]) - a_zp) * ra + np.float32(np.int64(b[i]) - b_zp) * rb
        out[i] = min(max(np.int64(np.rint(y)) + out_zp, qmin), qmax)


def add(a_q, a_scale: float, a_zp: int, b_q, b_scale: float, b_zp: int, out_scale: float, out_zp: int,
        profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.add``."""
    a, b, shape = _broadcast_flat(a_q, b_q)
    out = np.empty(a.size, dtype=fmt.dtype)
    if profile == "fixed_point":
        (ma, sa), (mb, sb), (mo, so) = (spec.quantize_multiplier(m) for m in spec.add_params(a_scale, b_scale, out_scale))
        _add_fixed(a, np.int64(a_zp), b, np.int64(b_zp), ma, sa, mb, sb, mo, so, np.int64(out_zp), fmt.qmin, fmt.qmax, out)
    elif profile == "onnxruntime":
        _add_float(a, np.int64(a_zp), b, np.int64(b_zp), np.float32(a_scale / out_scale), np.float32(b_scale / out_scale),
                   np.int64(out_zp), fmt.qmin, fmt.qmax, out)
    else:
        raise ValueError(f"profile={profile!r}: use one of {', '.join(spec.PROFILES)}")
    return out.reshape(shape)


@numba.njit(cache=True)
def _mul(a, a_zp, b, b_zp, fixed, m0, shift, mult, out_zp, qmin, qmax, out):
    for i in range(a.size):
        out[i] = _requant((np.int64(a[i]) - a_zp) * (np.int64(b[i]) - b_zp), 0, fixed, m0, shift, mult, out_zp, qmin, qmax)


def mul(a_q, a_scale: float, a_zp: int, b_q, b_scale: float, b_zp: int, out_scale: float, out_zp: int,
        profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.mul``."""
    a, b, shape = _broadcast_flat(a_q, b_q)
    fixed, m0, shift, mult = _requant_params(a_scale * b_scale / out_scale, 1, profile)
    out = np.empty(a.size, dtype=fmt.dtype)
    _mul(a, np.int64(a_zp), b, np.int64(b_zp), fixed, m0, shift, mult, np.int64(out_zp), fmt.qmin, fmt.qmax, out)
    return out.reshape(shape)


@numba.njit(cache=True)
def _clip(x, lo, hi, out):
    for i in range(x.size):
        out[i] = min(max(x[i], lo), hi)


def clip(x_q, lo: int, hi: int) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.clip``."""
    x_q = np.asarray(x_q)
    out = np.empty(x_q.size, dtype=x_q.dtype)
    _clip(np.ascontiguousarray(x_q).reshape(-1), x_q.dtype.type(max(lo, np.iinfo(x_q.dtype).min)),
          x_q.dtype.type(min(hi, np.iinfo(x_q.dtype).max)), out)
    return out.reshape(x_q.shape)


@numba.njit(cache=True)
def _requant_flat(x, zp, fixed, m0, shift, mult, out_zp, qmin, qmax, out):
    for i in range(x.size):
        out[i] = _requant(np.int64(x[i]) - zp, 0, fixed, m0, shift, mult, out_zp, qmin, qmax)


def concat(inputs, out_scale: float, out_zp: int, axis: int = -1, profile: str = "fixed_point",
           fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.concat``."""
    parts = []
    for q, scale, zp in inputs:
        q = np.asarray(q)
        if scale == out_scale and zp == out_zp and q.dtype == fmt.dtype:
            parts.append(q)
            continue
        fixed, m0, shift, mult = _requant_params(scale / out_scale, 1, profile)
        out = np.empty(q.size, dtype=fmt.dtype)
        _requant_flat(np.ascontiguousarray(q).reshape(-1), np.int64(zp), fixed, m0, shift, mult, np.int64(out_zp),
                      fmt.qmin, fmt.qmax, out)
        parts.append(out.reshape(q.shape))
    return np.concatenate(parts, axis=axis)
