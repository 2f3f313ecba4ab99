"""Numba twins of ``nna_emulator.reference.conv``: ``conv1d`` and ``conv2d``."""

from __future__ import annotations

import numba
import numpy as np

from nna_emulator import spec
from nna_emulator.ops.fixed_point import _requant, _requant_params


@numba.njit(cache=True)
def _conv1d(x, x_zp, w, bias, dilation, groups, pad_left, t_out, fixed, m0, shift, mult, out_zp, qmin, qmax, out):
    n, c_in, t = x.shape
    c_out, c_per_group, k = w.shape
    out_per_group = c_out // groups
    for b in range(n):
        for co in range(c_out):
            g = co // out_per_group
            for s in range(t_out):
                acc = np.int64(bias[co])
                for ci in range(c_per_group):
                    for j in range(k):
                        src = s + j * dilation - pad_left
                        if 0 <= src < t:  # padding holds the zero point: contributes 0
                            acc += (np.int64(x[b, g * c_per_group + ci, src]) - x_zp) * np.int64(w[co, ci, j])
                out[b, co, s] = _requant(acc, co, fixed, m0, shift, mult, out_zp, qmin, qmax)


def conv1d(x_q, x_zp: int, w_q, bias_q, multiplier, out_zp: int, dilation: int = 1, groups: int = 1,
           pad_left: int = 0, pad_right: int = 0, profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.conv1d``."""
    x_q, w_q = np.ascontiguousarray(x_q), np.ascontiguousarray(w_q)
    c_out, _, k = w_q.shape
    t_out = max(x_q.shape[2] + pad_left + pad_right - dilation * (k - 1), 0)
    bias = np.zeros(c_out, dtype=np.int64) if bias_q is None else np.asarray(bias_q, dtype=np.int64)
    fixed, m0, shift, mult = _requant_params(multiplier, c_out, profile)
    out = np.empty((x_q.shape[0], c_out, t_out), dtype=fmt.dtype)
    _conv1d(x_q, np.int64(x_zp), w_q, bias, dilation, groups, pad_left, t_out, fixed, m0, shift, mult,
            np.int64(out_zp), fmt.qmin, fmt.qmax, out)
    return out


@numba.njit(cache=True)
def _conv2d(x, x_zp, w, bias, sh, sw, ph, pw, groups, fixed, m0, shift, mult, out_zp, qmin, qmax, out):
    n, c_in, h, wd = x.shape
    c_out, c_per_group, kh, kw = w.shape
    _, _, h_out, w_out = out.shape
    out_per_group = c_out // groups
    for b in range(n):
        for co in range(c_out):
            g = co // out_per_group
            for oy in range(h_out):
                for ox in range(w_out):
                    acc = np.int64(bias[co])
                    for ci in range(c_per_group):
                        for i in range(kh):
                            y = oy * sh + i - ph
                            if y < 0 or y >= h:
                                continue
                            for j in range(kw):
                                xx = ox * sw + j - pw
                                if 0 <= xx < wd:
                                    acc += (np.int64(x[b, g * c_per_group + ci, y, xx]) - x_zp) * np.int64(w[co, ci, i, j])
                    out[b, co, oy, ox] = _requant(acc, co, fixed, m0, shift, mult, out_zp, qmin, qmax)


def conv2d(x_q, x_zp: int, w_q, bias_q, multiplier, out_zp: int, stride=(1, 1), padding=(0, 0), groups: int = 1,
           profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.conv2d``."""
    x_q, w_q = np.ascontiguousarray(x_q), np.ascontiguousarray(w_q)
    (sh, sw), (ph, pw) = stride, padding
    c_out, _, kh, kw = w_q.shape
    h_out = max((x_q.shape[2] + 2 * ph - kh) // sh + 1, 0)
    w_out = max((x_q.shape[3] + 2 * pw - kw) // sw + 1, 0)
    bias = np.zeros(c_out, dtype=np.int64) if bias_q is None else np.asarray(bias_q, dtype=np.int64)
    fixed, m0, shift, mult = _requant_params(multiplier, c_out, profile)
    out = np.empty((x_q.shape[0], c_out, h_out, w_out), dtype=fmt.dtype)
    _conv2d(x_q, np.int64(x_zp), w_q, bias, sh, sw, ph, pw, groups, fixed, m0, shift, mult, np.int64(out_zp),
            fmt.qmin, fmt.qmax, out)
    return out
