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


def _q8(rng, shape):
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


@pytest.mark.parametrize("profile", spec.PROFILES)
@pytest.mark.parametrize("c_in, c_out, k, stride, pad, groups", [
    (1, 8, (3, 3), (1, 1), (0, 1), 1),  # the subsampling's first conv
    (8, 16, (3, 3), (2, 2), (0, 0), 1),  # strided
    (4, 4, (3, 3), (1, 2), (1, 1), 4),  # depthwise
    (6, 4, (5, 5), (1, 1), (2, 2), 2),  # grouped, 'same'
    (2, 3, (4, 4), (1, 1), (0, 0), 1),  # larger than the input: empty output
])
def test_conv2d_numba_equals_reference(profile, c_in, c_out, k, stride, pad, groups):
    rng = np.random.default_rng(c_in * 10 + c_out)
    x_q = _q8(rng, (2, c_in, 7, 3 if k[0] == 4 else 9))
    w_q = rng.integers(-127, 128, size=(c_out, c_in // groups) + k, dtype=np.int8)
    bias = rng.integers(-9000, 9000, size=c_out).astype(np.int32)
    for multiplier in (0.0021, rng.uniform(1e-3, 1e-2, size=c_out)):
        ref = reference.conv2d(x_q, -3, w_q, bias, multiplier, 11, stride, pad, groups, profile)
        got = ops.conv2d(x_q, -3, w_q, bias, multiplier, 11, stride, pad, groups, profile)
        np.testing.assert_array_equal(got, ref)


def test_conv2d_reference_matches_float_convolution():
    import torch

    rng = np.random.default_rng(4)
    x_q, w_q = _q8(rng, (2, 3, 8, 10)), rng.integers(-127, 128, size=(5, 3, 3, 3), dtype=np.int8)
    acc = reference.conv2d(x_q, 7, w_q, None, 1.0, 0, (2, 1), (1, 0), fmt=spec.QFormat(32))
    x = torch.nn.functional.pad(torch.tensor(x_q, dtype=torch.float64) - 7, (0, 0, 1, 1))
    expected = torch.nn.functional.conv2d(x, torch.tensor(w_q, dtype=torch.float64), stride=(2, 1))
    np.testing.assert_array_equal(acc, expected.numpy().astype(np.int64))


@pytest.mark.parametrize("profile", spec.PROFILES)
def test_add_and_mul_numba_equal_reference_and_real_arithmetic(profile):
    rng = np.random.default_rng(5)
    a, b = _q8(rng, (4, 50)), _q8(rng, (4, 50))
    a[0, :4], b[0, :4] = [127, -128, 127, -128], [127, -128, -128, 127]  # saturation corners
    for (sa, za), (sb, zb), (so, zo) in [((0.02, 3), (0.05, -7), (0.06, 1)), ((0.1, 0), (0.1, 0), (0.2, 0)),
                                         ((0.003, -128), (0.4, 127), (0.01, -20))]:
        for op in ("add", "mul"):
            out_scale = so if op == "add" else sa * sb * 40
            ref = getattr(reference, op)(a, sa, za, b, sb, zb, out_scale, zo, profile)
            got = getattr(ops, op)(a, sa, za, b, sb, zb, out_scale, zo, profile)
            np.testing.assert_array_equal(got, ref)
            real = (sa * (a.astype(float) - za)) + (sb * (b.astype(float) - zb)) if op == "add" else \
                (sa * (a.astype(float) - za)) * (sb * (b.astype(float) - zb))
            exact = np.clip(np.round(real / out_scale) + zo, -128, 127)
            # fixed point rounds three times (within one code); onnxruntime's float32 once (ties aside)
            assert np.abs(ref.astype(int) - exact).max() <= 1
    # broadcasting (a per-channel bias vector against a matrix) is the same in both
    v = _q8(rng, (50,))
    np.testing.assert_array_equal(ops.add(a, 0.02, 0, v, 0.03, 1, 0.05, 0, profile),
                                  reference.add(a, 0.02, 0, v, 0.03, 1, 0.05, 0, profile))


def test_clip_is_relu_and_hard_tanh():
    x = np.arange(-128, 128, dtype=np.int8)
    np.testing.assert_array_equal(ops.clip(x, -5, 127), reference.clip(x, -5, 127))
    np.testing.assert_array_equal(ops.clip(x, -40, 40), np.clip(x, -40, 40))
    assert ops.clip(x, -300, 300).tolist() == x.tolist()


def _lstm_tables(cell_bits):
    sig = reference.activation_table(lambda v: 1 / (1 + np.exp(-v)), 2.0**-12, 0, 2.0**-15, 0, spec.INT16, spec.INT16)
    tanh = reference.activation_table(np.tanh, 2.0**-12, 0, 2.0**-15, 0, spec.INT16, spec.INT16)
    tanh_c = reference.activation_table(np.tanh, 2.0**-cell_bits, 0, 2.0**-15, 0, spec.INT16, spec.INT16)
    return sig, tanh, tanh_c


@pytest.mark.parametrize("profile", spec.PROFILES)
def test_lstm_cell_numba_equals_reference_and_tracks_float(profile):
    rng = np.random.default_rng(6)
    n, h, cell_bits, s_h, z_h = 5, 24, 11, 1 / 127, 0
    tables = _lstm_tables(cell_bits)
    gates = rng.integers(-32767, 32768, size=(n, 4 * h)).astype(np.int16)
    gates[0, :4] = [-32767, 32767, 0, 1]
    c = rng.integers(-32767, 32768, size=(n, h)).astype(np.int16)
    h_ref, c_ref = reference.lstm_cell(gates, c, cell_bits, *tables, 2.0**-30 / s_h, z_h, profile)
    h_got, c_got = ops.lstm_cell(gates, c, cell_bits, *tables, 2.0**-30 / s_h, z_h, profile)
    np.testing.assert_array_equal(h_got, h_ref)
    np.testing.assert_array_equal(c_got, c_ref)
    # against float: the same step on the dequantized gates and cell
    g = gates.astype(float) * 2.0**-12
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    i, f, gg, o = sig(g[:, :h]), sig(g[:, h : 2 * h]), np.tanh(g[:, 2 * h : 3 * h]), sig(g[:, 3 * h :])
    c_float = np.clip(f * c * 2.0**-cell_bits + i * gg, -16, 16 - 2.0**-cell_bits)
    assert np.abs(c_ref * 2.0**-cell_bits - c_float).max() < 4e-3
    h_float = o * np.tanh(c_ref * 2.0**-cell_bits)
    assert np.abs(h_ref * s_h - h_float).max() <= 0.5 * s_h + 1e-3
    with pytest.raises(ValueError):
        ops.lstm_cell(np.full((1, 4), -32768, np.int16), c[:1, :1], cell_bits, *tables, 1.0, 0)


@pytest.mark.parametrize("profile", spec.PROFILES)
@pytest.mark.parametrize("dim", [1, 2, 7, 320])
def test_layer_norm_numba_equals_reference_and_tracks_float(profile, dim):
    rng = np.random.default_rng(dim)
    x = _q8(rng, (6, dim))
    x[0] = 5  # constant row: variance 0, output = beta
    s_x, z_x, eps = 0.05, 3, 1e-5
    gamma, beta = rng.uniform(0.5, 1.5, dim), rng.normal(0, 0.2, dim)
    s_g = np.abs(gamma).max() / 127
    gamma_q = spec.quantize(gamma, s_g, 0, spec.INT8_WEIGHT)
    beta_q = spec.quantize_bias(beta, 2.0**-spec.LN_FRAC_BITS, s_g)
    s_o, z_o = 4 / 128, 0
    args = (x, z_x, gamma_q, beta_q, 2.0**-spec.LN_FRAC_BITS * s_g / s_o, z_o,
            reference.layer_norm_eps(eps, s_x, dim), profile)
    ref = reference.layer_norm(*args)
    np.testing.assert_array_equal(ops.layer_norm(*args), ref)
    real = (x.astype(int) - z_x) * s_x
    expected = (real - real.mean(-1, keepdims=True)) / np.sqrt(real.var(-1, keepdims=True) + eps) * gamma + beta
    inside = np.abs(expected) < 3.9
    err = np.abs(ref * s_o - expected)[inside]
    # output rounding (half a step, 0.0156) + int8 gamma (half a step of s_g times |z| <= sqrt(dim))
    assert err.max() <= 0.5 * s_o + 0.5 * s_g * np.sqrt(dim) + 1e-3


@pytest.mark.parametrize("dim", [1, 3, 32, 500])
def test_softmax_numba_equals_reference_and_tracks_float(dim):
    rng = np.random.default_rng(dim)
    x = _q8(rng, (7, dim))
    x[0] = 9  # uniform
    s_x = 0.08
    table = reference.softmax_exp_table(s_x)
    ref = reference.softmax(x, table)
    np.testing.assert_array_equal(ops.softmax(x, table), ref)
    real = x * s_x
    p = np.exp(real - real.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    inside = p < 255.5 / 256  # p = 1 saturates at 255 / 256
    assert (ref[~inside] == 127).all()
    if inside.any():
        assert np.abs((ref.astype(int) + 128) / 256 - p)[inside].max() <= 0.5 / 256 + 1e-4


def test_embedding_and_concat():
    rng = np.random.default_rng(8)
    table = rng.integers(-127, 128, size=(10, 6), dtype=np.int8)
    ids = np.array([[-1, -1, 0], [3, 9, 2]])
    ref = reference.embedding(ids, table, zero_code=0)
    np.testing.assert_array_equal(ops.embedding(ids, table, 0), ref)
    assert (ref[0, :2] == 0).all() and (ref[1, 1] == table[9]).all()
    with pytest.raises(IndexError):
        ops.embedding([10], table)
    for profile in spec.PROFILES:
        parts = [(_q8(rng, (3, 4)), 0.05, 2), (_q8(rng, (3, 2)), 0.1, 0), (_q8(rng, (3, 5)), 0.07, -4)]
        ref = reference.concat(parts, 0.07, -4, axis=1, profile=profile)
        np.testing.assert_array_equal(ops.concat(parts, 0.07, -4, axis=1, profile=profile), ref)
        np.testing.assert_array_equal(ref[:, 6:], parts[2][0])  # matching scale: copied
        real = np.concatenate([spec.dequantize(q, s, z) for q, s, z in parts], axis=1)
        inside = (real >= (-128 + 4) * 0.07) & (real <= (127 + 4) * 0.07)  # the rest saturates
        assert np.abs(spec.dequantize(ref, 0.07, -4) - real)[inside].max() <= 0.5 * 0.07 + 1e-9


def test_lookup_rejects_codes_outside_its_format():
    table = reference.activation_table(np.tanh, 2.0**-12, 0, 2.0**-15, 0, spec.INT16, spec.INT16)
    bad = np.array([-32768], np.int16)
    with pytest.raises(ValueError):
        reference.lookup(bad, table, spec.INT16)
    with pytest.raises(ValueError):
        ops.lookup(bad, table, spec.INT16)


def test_cached_kernels_older_than_the_shared_helpers_are_dropped(tmp_path):
    """Numba keys a cached kernel on its own file only; the kernels inline fixed_point's helpers."""
    import os

    from nna_emulator.ops import drop_stale_kernels

    cache = tmp_path / "__pycache__"
    cache.mkdir()
    helpers = tmp_path / "fixed_point.py"
    helpers.write_text("")
    old, new, other = cache / "conv._conv-12.py311.nbi", cache / "conv._conv-12.py311.1.nbc", cache / "conv.cpython-311.pyc"
    for f in (old, new, other):
        f.write_bytes(b"")
    t = helpers.stat().st_mtime
    os.utime(old, (t - 10, t - 10))
    os.utime(other, (t - 10, t - 10))
    os.utime(new, (t + 10, t + 10))
    assert drop_stale_kernels(tmp_path, [helpers]) == [old]
    assert not old.exists() and new.exists() and other.exists()
    assert drop_stale_kernels(tmp_path / "elsewhere", [helpers]) == []  # no cache yet
