"""Numba kernels == NumPy reference, bit for bit, on random inputs and edge cases."""

import numpy as np
import pytest

from nna_emulator import ops, reference, spec


def _random_linear(rng, n, k, m):
    x_q = rng.integers(-128, 128, size=(n, k), dtype=np.int8)
    w_q = rng.integers(-127, 128, size=(m, k), dtype=np.int8)
    bias = rng.integers(-(2**20), 2**20, size=m).astype(np.int32)
    return x_q, w_q, bias


@pytest.mark.parametrize("profile", spec.PROFILES)
@pytest.mark.parametrize("n, k, m", [(1, 1, 1), (0, 5, 3), (3, 0, 4), (7, 33, 5), (16, 256, 64)])
def test_linear_numba_equals_reference(profile, n, k, m):
    rng = np.random.default_rng(n * 1000 + k * 10 + m)
    x_q, w_q, bias = _random_linear(rng, n, k, m)
    for multiplier in (0.00037, rng.uniform(1e-4, 2e-2, size=m), 0.5, 1.7):
        for x_zp, out_zp in ((0, 0), (-128, 127), (17, -5)):
            ref = reference.linear(x_q, x_zp, w_q, bias, multiplier, out_zp, profile)
            got = ops.linear(x_q, x_zp, w_q, bias, multiplier, out_zp, profile)
            assert got.dtype == ref.dtype == np.int8
            np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("profile", spec.PROFILES)
def test_linear_edge_cases_saturation_and_ties(profile):
    # extreme codes saturate both ways; multiplier 0.5 on odd accumulators makes exact ties
    x_q = np.array([[127, 127], [-128, -128], [1, 0], [-1, 0], [3, 0], [-3, 0]], dtype=np.int8)
    w_q = np.array([[127, 127], [1, 0]], dtype=np.int8)
    for mult in (1.0, 0.5):
        ref = reference.linear(x_q, 0, w_q, None, mult, 0, profile)
        np.testing.assert_array_equal(ops.linear(x_q, 0, w_q, None, mult, 0, profile), ref)
    assert reference.linear(x_q, 0, w_q, None, 1.0, 0, profile)[:2, 0].tolist() == [127, -128]
    ties = reference.linear(x_q[2:], 0, w_q[1:], None, 0.5, 0, profile)[:, 0].tolist()  # 0.5, -0.5, 1.5, -1.5
    assert ties == ([1, 0, 2, -1] if profile == "fixed_point" else [0, 0, 2, -2])
    with pytest.raises(OverflowError):
        reference.accumulate(np.full((1, 140_000), -128, np.int8), 127, np.full((1, 140_000), 127, np.int8))


def test_lookup_tables_sigmoid_tanh():
    rng = np.random.default_rng(3)
    sig = reference.activation_table(lambda v: 1 / (1 + np.exp(-v)), 0.06, -3, 1 / 256, -128)
    tanh = reference.activation_table(np.tanh, 0.03, 0, 1 / 128, 0)
    x_q = rng.integers(-128, 128, size=(5, 77), dtype=np.int8)
    for table in (sig, tanh):
        assert table.shape == (256,)
        np.testing.assert_array_equal(ops.lookup(x_q, table), reference.lookup(x_q, table))
        assert (np.diff(table.astype(int)) >= 0).all(), "monotone functions give monotone tables"
    # inside the output range the only error is the output rounding: half an output LSB
    v = np.tanh(spec.dequantize(np.arange(-128, 128), 0.03, 0))
    inside = (v >= -128 / 128) & (v <= 127 / 128)
    assert inside.sum() > 200
    assert np.abs(spec.dequantize(tanh, 1 / 128, 0) - v)[inside].max() <= 0.5 / 128 + 1e-12
    # int16 input (LSTM gates): a 65536-entry table
    t16 = reference.activation_table(np.tanh, 2.0**-12, 0, 2.0**-15, 0, spec.INT16, spec.QFormat(16))
    x16 = rng.integers(-32767, 32768, size=1000).astype(np.int16)
    np.testing.assert_array_equal(ops.lookup(x16, t16, spec.INT16), reference.lookup(x16, t16, spec.INT16))


@pytest.mark.parametrize("profile", spec.PROFILES)
@pytest.mark.parametrize("c_in, c_out, k, dilation, groups, pad", [
    (3, 4, 3, 1, 1, (2, 0)),  # causal
    (8, 8, 3, 4, 8, (8, 0)),  # depthwise, dilated, causal (the ConvRNN-T global blocks)
    (4, 6, 5, 2, 2, (4, 4)),  # grouped, 'same'
    (2, 3, 1, 1, 1, (0, 0)),  # pointwise
    (2, 2, 4, 3, 1, (0, 0)),  # output shorter than the kernel span: empty
])
def test_conv1d_numba_equals_reference(profile, c_in, c_out, k, dilation, groups, pad):
    rng = np.random.default_rng(c_in * 100 + k * 10 + dilation)
    t = 9
    x_q = rng.integers(-128, 128, size=(2, c_in, t), dtype=np.int8)
    w_q = rng.integers(-127, 128, size=(c_out, c_in // groups, k), dtype=np.int8)
    bias = rng.integers(-5000, 5000, size=c_out).astype(np.int32)
    for multiplier in (0.0031, rng.uniform(1e-3, 1e-2, size=c_out)):
        ref = reference.conv1d(x_q, 5, w_q, bias, multiplier, -7, dilation, groups, *pad, profile=profile)
        got = ops.conv1d(x_q, 5, w_q, bias, multiplier, -7, dilation, groups, *pad, profile=profile)
        assert ref.shape == (2, c_out, max(t + sum(pad) - dilation * (k - 1), 0))
        np.testing.assert_array_equal(got, ref)


def test_conv1d_reference_matches_float_convolution():
    """Dequantized accumulators equal torch's float conv1d on the dequantized operands (exactly,
    since every product is an integer times a power of two)."""
    import torch

    rng = np.random.default_rng(9)
    x_q = rng.integers(-128, 128, size=(1, 4, 12), dtype=np.int8)
    w_q = rng.integers(-127, 128, size=(4, 1, 3), dtype=np.int8)
    # multiplier 1 with a wide output format returns the accumulator itself
    acc = reference.conv1d(x_q, 3, w_q, None, 1.0, 0, dilation=2, groups=4, pad_left=4, fmt=spec.QFormat(32))
    x = torch.nn.functional.pad(torch.tensor(x_q, dtype=torch.float64) - 3, (4, 0))
    expected = torch.nn.functional.conv1d(x, torch.tensor(w_q, dtype=torch.float64), dilation=2, groups=4)
    np.testing.assert_array_equal(acc, expected.numpy().astype(np.int64))
