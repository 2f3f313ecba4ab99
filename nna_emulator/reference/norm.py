"""Reference integer layer norm (``layer_norm``, its integer epsilon ``layer_norm_eps``) and the
rounded division it shares with ``softmax``.
"""

from __future__ import annotations

import math

import numpy as np

from nna_emulator import spec


def layer_norm_eps(eps: float, x_scale: float, dim: int) -> int:
    """The integer epsilon of ``layer_norm``: eps in (code units)^2, times dim^2."""
    return int(round(eps / x_scale**2 * dim**2))


def layer_norm(x_q, x_zp: int, gamma_q, beta_q, multiplier, out_zp: int, eps_int: int,
               profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Layer norm over the last axis (D) in integer arithmetic. With x = q - zp (int64):
        S = sum x;  d = D x - S  (= D (x - mean), exact)
        V = (sum d^2) // D + eps_int  (= D^2 (var + eps / s_x^2); eps_int from ``layer_norm_eps``)
        r = isqrt(V * 2^16)   (floor square root: 256 D std)
        z = round(d * 2^(12 + 8) / r)  (Q.12: (x - mean) / std * 4096, half away from zero)
        out = requantize(z * gamma_q + beta_q, multiplier)  (beta int32 at scale 2^-12 s_gamma,
              multiplier 2^-12 s_gamma / s_out; gamma int8 per tensor)
    Error against float layer norm on the dequantized input: the floor square root (relative
    1 / r, below 1e-4 for any D >= 4 with a spread of a few codes), half a Q.12 step in z, the int8
    gamma and the output rounding. D up to 4096 keeps every product inside int64."""
    x = np.asarray(x_q, dtype=np.int64) - x_zp
    dim = x.shape[-1]
    if dim > 4096:
        raise ValueError(f"layer_norm over {dim} features: at most 4096 fit the int64 arithmetic")
    d = dim * x - x.sum(axis=-1, keepdims=True)
    v = (d * d).sum(axis=-1, keepdims=True) // dim + eps_int
    r = np.vectorize(lambda a: math.isqrt(int(a)), otypes=[np.int64])(v << (2 * spec.LN_EXTRA_BITS)) if v.size else v
    z = np.where(r > 0, spec.divide_round_half_away(d << (spec.LN_FRAC_BITS + spec.LN_EXTRA_BITS), np.maximum(r, 1)), 0)
    acc = z * np.asarray(gamma_q, dtype=np.int64) + np.asarray(beta_q, dtype=np.int64)
    spec.check_int32(acc, "layer_norm")
    return spec.requantize(acc, multiplier, out_zp, fmt, profile)
