"""The integer numerics of the NNA, written once (NumPy only): quantization formats, rounding,
saturation and requantization. Fake-quant (``asr.compression``), the reference and Numba ops of this
package and the export checks all take their arithmetic from here.

Conventions (the TFLite/gemmlowp int8 scheme, Jacob et al., "Quantization and Training of Neural
Networks for Efficient Integer-Arithmetic-Only Inference", CVPR 2018):

- A real value r is represented as ``r = scale * (q - zero_point)``.
- Weights: int8, symmetric (zero point 0), one scale per output channel, range [-127, 127] (the
  -128 code is unused so that the range is symmetric, as TFLite does).
- Activations: int8 per tensor, asymmetric (zero point in [-128, 127]) or symmetric.
- Accumulators: int32. A bias is int32 at scale ``s_in * s_w`` with zero point 0, so it adds
  straight into the accumulator.
- int16 where a cell needs more range (LSTM cell state): symmetric, power-of-two scale.
- Requantization (int32 accumulator -> int8 output, real multiplier ``m = s_in * s_w / s_out``),
  selectable as a target *profile*:
  * ``"fixed_point"`` (gemmlowp/TFLite; what most NNAs implement): m = M0 * 2^shift with M0 an
    int32 in [2^30, 2^31), then ``SaturatingRoundingDoublingHighMul(acc * 2^max(shift, 0), M0)``
    (rounds half *up*, toward +inf: its nudge is 2^30 for a positive product but 1 - 2^30 for a
    negative one), then ``RoundingDivideByPOT(., max(-shift, 0))`` (rounds half away from zero);
    then add the output zero point and saturate.
  * ``"onnxruntime"``: ``round_half_to_even(float32(acc) * float32(m)) + zero_point``, saturated:
    the float requantization of onnxruntime's QLinear* CPU kernels.

Worked example (fixed point), m = 0.3, acc = 300, output zero point -3:
    frexp(0.3) = (0.6, -1) -> M0 = round(0.6 * 2^31) = 1288490189, shift = -1
    SRDHM(300, 1288490189) = (300 * 1288490189 + 2^30) >> 31 = 180   (180.00000003 rounded)
    RoundingDivideByPOT(180, 1) = 90;  90 - 3 = 87  (exact: 300 * 0.3 - 3 = 87)
Worked example (ties), m = 0.5 (M0 = 2^30, shift 0: only SRDHM rounds): acc = 5 -> 3 and
acc = -5 -> -2 in fixed point (half up); onnxruntime gives 2 and -2 (half to even).
Worked example (quantize), x = 0.25, scale = 0.1, zero point 10: 0.25 / 0.1 = 2.5 -> 2 (half to
even, as onnxruntime's QuantizeLinear) or 3 (half away, as TFLite) -> q = 12 or 13.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
PROFILES = ("fixed_point", "onnxruntime")


@dataclass(frozen=True)
class QFormat:
    """An integer format: ``bits`` wide, signed; ``narrow`` drops the most negative code (symmetric
    weights use [-127, 127])."""

    bits: int = 8
    narrow: bool = False

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1)) + (1 if self.narrow else 0)

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    @property
    def dtype(self):
        return {8: np.int8, 16: np.int16, 32: np.int32}[self.bits]


INT8 = QFormat(8)
INT8_WEIGHT = QFormat(8, narrow=True)
INT16 = QFormat(16, narrow=True)


def round_half_even(x: np.ndarray) -> np.ndarray:
    return np.rint(x)


def round_half_away(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize(x, scale, zero_point, fmt: QFormat = INT8, rounding: str = "half_even") -> np.ndarray:
    """q = saturate(round(x / scale) + zero_point). ``scale``/``zero_point`` broadcast against x
    (per-channel: shape them to the channel axis). ``rounding``: "half_even" (onnxruntime) or
    "half_away" (TFLite)."""
    if rounding not in ("half_even", "half_away"):
        raise ValueError(f"rounding={rounding!r}: use 'half_even' or 'half_away'")
    x = np.asarray(x, dtype=np.float64)
    r = round_half_even if rounding == "half_even" else round_half_away
    q = r(x / np.asarray(scale, dtype=np.float64)) + np.asarray(zero_point, dtype=np.float64)
    return np.clip(q, fmt.qmin, fmt.qmax).astype(fmt.dtype)


def dequantize(q, scale, zero_point=0) -> np.ndarray:
    return (np.asarray(q, dtype=np.float64) - zero_point) * np.asarray(scale, dtype=np.float64)


def choose_qparams(x_min: float, x_max: float, fmt: QFormat = INT8, symmetric: bool = False) -> tuple[float, int]:
    """(scale, zero_point) covering [x_min, x_max] widened to include 0 (so 0 is exact).

    Asymmetric: scale = (max - min) / (qmax - qmin), zero_point = round(qmin - min / scale).
    Symmetric: zero_point 0, scale = max(|min|, |max|) / qmax."""
    x_min, x_max = min(float(x_min), 0.0), max(float(x_max), 0.0)
    if symmetric:
        scale = max(-x_min, x_max) / fmt.qmax
        return (scale if scale > 0 else 1.0), 0
    scale = (x_max - x_min) / (fmt.qmax - fmt.qmin)
    if scale == 0:
        return 1.0, 0
    zero_point = int(np.clip(round_half_even(fmt.qmin - x_min / scale), fmt.qmin, fmt.qmax))
    return scale, zero_point


def weight_scales(w: np.ndarray, axis: int = 0) -> np.ndarray:
    """Per-output-channel symmetric int8 scales: max |w| over every axis but ``axis``, / 127."""
    w = np.asarray(w, dtype=np.float64)
    other = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
    scale = np.abs(w).max(axis=other) / INT8_WEIGHT.qmax if other else np.abs(w) / INT8_WEIGHT.qmax
    return np.where(scale > 0, scale, 1.0)


def quantize_bias(b, input_scale: float, weight_scale) -> np.ndarray:
    """int32 bias at scale ``input_scale * weight_scale`` (per channel), zero point 0."""
    return quantize(b, np.asarray(weight_scale, dtype=np.float64) * input_scale, 0, QFormat(32), "half_even")


def pot_scale(max_abs: float, fmt: QFormat = INT16) -> float:
    """The smallest power-of-two scale with ``max_abs`` inside the format (int16 cell state)."""
    if max_abs <= 0:
        return 1.0
    return 2.0 ** math.ceil(math.log2(max_abs / fmt.qmax))


# ---- fixed-point requantization (gemmlowp / TFLite) ---------------------------------------------


def quantize_multiplier(real: float) -> tuple[int, int]:
    """real > 0 -> (M0, shift): real = M0 * 2^(shift - 31), M0 in [2^30, 2^31) (TFLite's QuantizeMultiplier)."""
    if real <= 0:
        raise ValueError(f"requantization multiplier {real}: must be > 0")
    mantissa, shift = math.frexp(real)  # real = mantissa * 2^shift, mantissa in [0.5, 1)
    m0 = math.floor(mantissa * 2**31 + 0.5)  # half away from zero, as TFLite's TfLiteRound
    if m0 == 2**31:
        m0, shift = m0 // 2, shift + 1
    if shift < -31:  # too small to represent: the product is 0
        return 0, 0
    return int(m0), int(shift)


def quantize_multipliers(multiplier, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """A scalar or (channels,) real multiplier -> (M0, shift) int64 arrays of length ``channels``:
    ``quantize_multiplier`` vectorized (the same float64 operations, so the same integers)."""
    real = np.broadcast_to(np.asarray(multiplier, dtype=np.float64), (channels,))
    if channels and not (real > 0).all():
        raise ValueError(f"requantization multiplier {float(real[~(real > 0)][0])}: must be > 0")
    mantissa, shift = np.frexp(real)
    m0 = np.floor(mantissa * 2.0**31 + 0.5).astype(np.int64)
    shift = shift.astype(np.int64)
    carry = m0 == 2**31
    m0, shift = np.where(carry, m0 // 2, m0), np.where(carry, shift + 1, shift)
    tiny = shift < -31
    return np.where(tiny, 0, m0), np.where(tiny, 0, shift)


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp's SRDHM on int32: floor((a * b) / 2^31 + 1/2), i.e. round half up, saturating the
    one overflow (a == b == INT32_MIN). Exact in int64 (|a * b| <= 2^62)."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    # C++ integer division truncates toward zero
    num = ab + nudge
    out = np.where(num >= 0, num >> 31, -((-num) >> 31))
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, INT32_MAX, out).astype(np.int64)


def rounding_divide_by_pot(x, exponent: int) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: x / 2^exponent rounded half away from zero."""
    x = np.asarray(x, dtype=np.int64)
    if exponent == 0:
        return x
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def divide_round_half_away(num, den) -> np.ndarray:
    """num / den rounded half away from zero, den > 0, exact in int64 (layer norm, softmax)."""
    num, den = np.asarray(num, dtype=np.int64), np.asarray(den, dtype=np.int64)
    q = (2 * np.abs(num) + den) // (2 * den)
    return np.where(num < 0, -q, q)


def check_int32(acc: np.ndarray, op: str) -> np.ndarray:
    """``acc`` if it fits the NNA's int32 accumulator, which would wrap: OverflowError instead."""
    if acc.size and (acc.min() < INT32_MIN or acc.max() > INT32_MAX):
        raise OverflowError(f"int32 accumulator overflow in {op}: split the reduction (too many int8 products)")
    return acc


def multiply_by_quantized_multiplier(acc, m0: int, shift: int) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier: acc * M0 * 2^(shift - 31) with two roundings, half up
    then half away from zero (see the module docstring); within 1 of the exact rounding."""
    left, right = max(shift, 0), max(-shift, 0)
    x = np.asarray(acc, dtype=np.int64) * (1 << left)
    x = np.clip(x, INT32_MIN, INT32_MAX)  # the int32 left shift saturates on NNAs that implement it
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, m0), right)


def requantize(acc, multiplier, zero_point: int = 0, fmt: QFormat = INT8, profile: str = "fixed_point") -> np.ndarray:
    """int32 accumulators -> ``fmt`` outputs for the real multiplier(s) ``s_in * s_w / s_out``
    (a scalar, or one per output channel broadcasting against ``acc``'s last axis)."""
    acc = np.asarray(acc, dtype=np.int64)
    if profile == "fixed_point":
        mult = np.asarray(multiplier, dtype=np.float64)
        if mult.ndim == 0:
            out = multiply_by_quantized_multiplier(acc, *quantize_multiplier(float(mult)))
        else:
            out = np.empty_like(acc)
            for c, (m0, shift) in enumerate(zip(*quantize_multipliers(mult, acc.shape[-1]))):
                out[..., c] = multiply_by_quantized_multiplier(acc[..., c], int(m0), int(shift))
    elif profile == "onnxruntime":
        y = acc.astype(np.float32) * np.asarray(multiplier, dtype=np.float32)
        out = np.rint(y).astype(np.int64)
    else:
        raise ValueError(f"profile={profile!r}: use one of {', '.join(PROFILES)}")
    return np.clip(out + zero_point, fmt.qmin, fmt.qmax).astype(fmt.dtype)


# ---- op formats shared by the reference ops and their Numba twins ------------------------------

LN_FRAC_BITS = 12  # the normalised value z is held in Q.12
LN_EXTRA_BITS = 8  # extra precision of the integer standard deviation
ADD_LEFT_SHIFT = 20  # TFLite's int8 Add: inputs are scaled up by 2^20 before their multipliers
SOFTMAX_EXP_BITS = 15  # exp table entries in Q0.15


def add_params(a_scale: float, b_scale: float, out_scale: float) -> tuple[float, float, float]:
    """TFLite's Add rescaling: real multipliers (a, b, out) = (s_a / 2 max, s_b / 2 max,
    2 max / (2^20 s_out)) with max = max(s_a, s_b), so both input multipliers are at most 1/2."""
    twice_max = 2.0 * max(a_scale, b_scale)
    return a_scale / twice_max, b_scale / twice_max, twice_max / ((1 << ADD_LEFT_SHIFT) * out_scale)
