"""Reference elementwise ops: ``add`` and ``mul`` with rescale, ``clip``, and ``concat`` into one
output scale.
"""

from __future__ import annotations

import numpy as np

from nna_emulator import spec


def add(a_q, a_scale: float, a_zp: int, b_q, b_scale: float, b_zp: int, out_scale: float, out_zp: int,
        profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Elementwise a + b of two int8 tensors (broadcasting) at their own scales, into ``fmt``.

    fixed_point (TFLite's quantized Add): each (q - zp) is shifted left by 20 bits, multiplied by its
    quantized multiplier from ``add_params``, the two are summed and the sum requantized by the output
    multiplier; three roundings, so the result is within 1 code of round(real sum / s_out).
    onnxruntime: float32 (a - z_a) * (s_a / s_o) + (b - z_b) * (s_b / s_o), rounded half to even."""
    a = np.asarray(a_q, dtype=np.int64) - a_zp
    b = np.asarray(b_q, dtype=np.int64) - b_zp
    if profile == "fixed_point":
        ma, mb, mo = spec.add_params(a_scale, b_scale, out_scale)
        sa = spec.multiply_by_quantized_multiplier(a << spec.ADD_LEFT_SHIFT, *spec.quantize_multiplier(ma))
        sb = spec.multiply_by_quantized_multiplier(b << spec.ADD_LEFT_SHIFT, *spec.quantize_multiplier(mb))
        out = spec.multiply_by_quantized_multiplier(sa + sb, *spec.quantize_multiplier(mo))
    elif profile == "onnxruntime":
        y = a.astype(np.float32) * np.float32(a_scale / out_scale) + b.astype(np.float32) * np.float32(b_scale / out_scale)
        out = np.rint(y).astype(np.int64)
    else:
        raise ValueError(f"profile={profile!r}: use one of {', '.join(spec.PROFILES)}")
    return np.clip(out + out_zp, fmt.qmin, fmt.qmax).astype(fmt.dtype)


def mul(a_q, a_scale: float, a_zp: int, b_q, b_scale: float, b_zp: int, out_scale: float, out_zp: int,
        profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Elementwise a * b (broadcasting): the exact product (a - z_a)(b - z_b) requantized by
    s_a s_b / s_out (``spec.requantize``)."""
    acc = (np.asarray(a_q, dtype=np.int64) - a_zp) * (np.asarray(b_q, dtype=np.int64) - b_zp)
    return spec.requantize(acc, a_scale * b_scale / out_scale, out_zp, fmt, profile)


def clip(x_q, lo: int, hi: int) -> np.ndarray:
    """Clamp codes to [lo, hi] (same scale in and out): ReLU is ``lo = zero point``; ReLU6 and hard
    tanh also set ``hi`` to the code of 6 or 1. Exact."""
    x_q = np.asarray(x_q)
    return np.clip(x_q, lo, hi).astype(x_q.dtype)


def concat(inputs, out_scale: float, out_zp: int, axis: int = -1, profile: str = "fixed_point",
           fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Concatenate (q, scale, zero_point) tensors along ``axis`` into one output scale: an input whose
    scale and zero point already match is copied; any other is requantized ((q - zp) by s / s_out)."""
    parts = []
    for q, scale, zp in inputs:
        q = np.asarray(q)
        if scale == out_scale and zp == out_zp and q.dtype == fmt.dtype:
            parts.append(q)
        else:
            parts.append(spec.requantize(q.astype(np.int64) - zp, scale / out_scale, out_zp, fmt, profile))
    return np.concatenate(parts, axis=axis)
