"""nna_emulator.spec: hand-checked worked examples, and property tests against exact rational
arithmetic (Python integers and fractions) on random inputs."""

from fractions import Fraction

import numpy as np
import pytest

from nna_emulator import spec


def test_worked_examples_from_the_docstring():
    m0, shift = spec.quantize_multiplier(0.3)
    assert (m0, shift) == (1288490189, -1)
    assert int(spec.saturating_rounding_doubling_high_mul(300, m0)) == 180
    assert int(spec.rounding_divide_by_pot(180, 1)) == 90
    assert int(spec.requantize(300, 0.3, zero_point=-3)) == 87
    assert int(spec.requantize(300, 0.3, zero_point=-3, profile="onnxruntime")) == 87
    # ties: +-5 * 0.5 = +-2.5; SRDHM rounds half up, onnxruntime half to even
    assert int(spec.requantize(5, 0.5)) == 3 and int(spec.requantize(-5, 0.5)) == -2
    assert int(spec.requantize(5, 0.5, profile="onnxruntime")) == 2 and int(spec.requantize(-5, 0.5, profile="onnxruntime")) == -2
    # RoundingDivideByPOT rounds half away from zero
    assert spec.rounding_divide_by_pot([5, -5, 6, -6, 7, -7], 2).tolist() == [1, -1, 2, -2, 2, -2]
    assert int(spec.quantize(0.25, 0.1, 10)) == 12 and int(spec.quantize(0.25, 0.1, 10, rounding="half_away")) == 13


def test_formats_and_saturation():
    assert (spec.INT8.qmin, spec.INT8.qmax) == (-128, 127)
    assert (spec.INT8_WEIGHT.qmin, spec.INT8_WEIGHT.qmax) == (-127, 127)
    assert (spec.INT16.qmin, spec.INT16.qmax) == (-32767, 32767)
    assert spec.quantize([1e9, -1e9], 1.0, 0).tolist() == [127, -128]
    assert spec.requantize([2**31 - 1, -(2**31)], 1.0).tolist() == [127, -128]
    assert int(spec.saturating_rounding_doubling_high_mul(spec.INT32_MIN, spec.INT32_MIN)) == spec.INT32_MAX
    assert spec.pot_scale(3.0) == 2.0 ** -13  # 3 / 32767 = 9.2e-5 -> 2^-13 = 1.2e-4


def test_quantize_dequantize_error_is_at_most_half_an_lsb_inside_the_range():
    rng = np.random.default_rng(0)
    for _ in range(50):
        lo, hi = sorted(rng.normal(0, 5, size=2))
        for symmetric in (False, True):
            scale, zp = spec.choose_qparams(lo, hi, symmetric=symmetric)
            x = rng.uniform(min(lo, 0), max(hi, 0), size=1000)
            err = np.abs(spec.dequantize(spec.quantize(x, scale, zp), scale, zp) - x)
            assert err.max() <= scale / 2 * (1 + 1e-9)
            assert spec.dequantize(spec.quantize(0.0, scale, zp), scale, zp) == 0.0, "zero is exact"


def test_quantize_and_requantize_are_monotone():
    x = np.linspace(-300, 300, 20001)
    for rounding in ("half_even", "half_away"):
        assert (np.diff(spec.quantize(x, 0.7, 3, rounding=rounding).astype(int)) >= 0).all()
    acc = np.arange(-70000, 70000, 7)
    for profile in spec.PROFILES:
        assert (np.diff(spec.requantize(acc, 0.0021, 5, profile=profile).astype(int)) >= 0).all()


def _round_half_up(f: Fraction) -> int:
    return (f + Fraction(1, 2)).__floor__()


def _round_half_away(f: Fraction) -> int:
    n = abs(f.numerator) * 2 + f.denominator
    q = n // (2 * f.denominator)
    return q if f >= 0 else -q


def test_fixed_point_requantization_equals_exact_rational_arithmetic():
    """Two exact roundings (SRDHM half up, then the power-of-two divide half away from zero), computed
    with Python integers and Fractions; and within 1 LSB of the single exact rounding of acc * m."""
    rng = np.random.default_rng(1)
    for _ in range(300):
        real = float(np.exp(rng.uniform(np.log(1e-5), np.log(4.0))))
        m0, shift = spec.quantize_multiplier(real)
        assert abs(Fraction(m0) * Fraction(2) ** (shift - 31) - Fraction(real)) <= Fraction(real) * Fraction(1, 2**30)
        acc = rng.integers(-(2**24), 2**24, size=20)
        got = spec.multiply_by_quantized_multiplier(acc, m0, shift)
        for a, g in zip(acc.tolist(), got.tolist()):
            left, right = max(shift, 0), max(-shift, 0)
            first = _round_half_up(Fraction(a * 2**left * m0, 2**31))
            exact_two_step = _round_half_away(Fraction(first, 2**right))
            assert g == exact_two_step
            assert abs(g - _round_half_away(Fraction(a) * Fraction(m0) * Fraction(2) ** (shift - 31))) <= 1


def test_per_channel_weights_and_bias():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(4, 6))
    w[2] = 0.0
    scales = spec.weight_scales(w, axis=0)
    q = spec.quantize(w, scales[:, None], 0, spec.INT8_WEIGHT)
    assert np.abs(q).max(axis=1).tolist() == [127, 127, 0, 127]
    b = spec.quantize_bias(np.array([0.5, -0.25, 0.0, 1.0]), 0.02, scales)
    assert b.dtype == np.int32
    np.testing.assert_allclose(b * 0.02 * scales, [0.5, -0.25, 0.0, 1.0], atol=0.02 * scales.max())


def test_bad_arguments():
    with pytest.raises(ValueError, match="rounding"):
        spec.quantize(1.0, 1.0, 0, rounding="up")
    with pytest.raises(ValueError, match="profile"):
        spec.requantize(1, 0.5, profile="tpu")
    with pytest.raises(ValueError, match="multiplier"):
        spec.quantize_multiplier(0.0)


def test_vectorized_multipliers_equal_the_scalar_rule():
    rng = np.random.default_rng(11)
    reals = np.concatenate([10.0 ** rng.uniform(-12, 3, 2000), [1.0, 0.5, 2.0**-40, np.nextafter(1.0, 0), 0.9999999999]])
    m0, shift = spec.quantize_multipliers(reals, reals.size)
    expected = [spec.quantize_multiplier(float(r)) for r in reals]
    assert m0.tolist() == [e[0] for e in expected] and shift.tolist() == [e[1] for e in expected]
    with pytest.raises(ValueError):
        spec.quantize_multipliers(np.array([0.1, 0.0]), 2)
