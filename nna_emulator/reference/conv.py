"""Reference convolutions: ``conv1d`` (dilated, grouped, explicit padding) and ``conv2d`` (strided,
padded, grouped).
"""

from __future__ import annotations

import numpy as np

from nna_emulator import spec


def conv1d(x_q, x_zp: int, w_q, bias_q, multiplier, out_zp: int, dilation: int = 1, groups: int = 1,
           pad_left: int = 0, pad_right: int = 0, profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """int8 1-D convolution. x_q (N, C_in, T), w_q (C_out, C_in / groups, K), bias_q (C_out,) ->
    (N, C_out, T + pad_left + pad_right - dilation * (K - 1)). Padding holds the input zero point
    (a real 0); ``multiplier`` is a scalar or one per output channel."""
    x = np.asarray(x_q, dtype=np.int64) - x_zp  # (N, C_in, T), real zero = 0 from here on
    x = np.pad(x, ((0, 0), (0, 0), (pad_left, pad_right)))
    w = np.asarray(w_q, dtype=np.int64)
    n, c_in, t = x.shape
    c_out, c_per_group, k = w.shape
    t_out = t - dilation * (k - 1)
    out_per_group = c_out // groups
    acc = np.zeros((n, c_out, max(t_out, 0)), dtype=np.int64)
    for co in range(c_out):
        g = co // out_per_group
        for ci in range(c_per_group):
            for j in range(k):
                acc[:, co] += w[co, ci, j] * x[:, g * c_per_group + ci, j * dilation : j * dilation + t_out]
    if bias_q is not None:
        acc += np.asarray(bias_q, dtype=np.int64).reshape(1, c_out, 1)
    spec.check_int32(acc, "conv1d")
    out = spec.requantize(acc.transpose(0, 2, 1), multiplier, out_zp, fmt, profile)  # per-channel on the last axis
    return out.transpose(0, 2, 1)


def conv2d(x_q, x_zp: int, w_q, bias_q, multiplier, out_zp: int, stride=(1, 1), padding=(0, 0), groups: int = 1,
           profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """int8 2-D convolution (torch's Conv2d layout). x_q (N, C_in, H, W), w_q (C_out, C_in / groups,
    KH, KW), bias_q (C_out,); ``padding`` (ph, pw) on both sides of each axis holds the input zero
    point (a real 0) -> (N, C_out, (H + 2 ph - KH) // sh + 1, (W + 2 pw - KW) // sw + 1)."""
    (sh, sw), (ph, pw) = stride, padding
    x = np.pad(np.asarray(x_q, dtype=np.int64) - x_zp, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    w = np.asarray(w_q, dtype=np.int64)
    n, c_in, h, wd = x.shape
    c_out, c_per_group, kh, kw = w.shape
    h_out, w_out = max((h - kh) // sh + 1, 0), max((wd - kw) // sw + 1, 0)
    out_per_group = c_out // groups
    acc = np.zeros((n, c_out, h_out, w_out), dtype=np.int64)
    for co in range(c_out):
        g = co // out_per_group
        for ci in range(c_per_group):
            for i in range(kh):
                for j in range(kw):
                    window = x[:, g * c_per_group + ci, i : i + sh * (h_out - 1) + 1 : sh, j : j + sw * (w_out - 1) + 1 : sw]
                    acc[:, co] += w[co, ci, i, j] * window
    if bias_q is not None:
        acc += np.asarray(bias_q, dtype=np.int64).reshape(1, c_out, 1, 1)
    spec.check_int32(acc, "conv2d")
    return spec.requantize(acc.transpose(0, 2, 3, 1), multiplier, out_zp, fmt, profile).transpose(0, 3, 1, 2)
