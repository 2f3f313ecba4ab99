"""The emulator's onnxruntime profile == onnxruntime's own integer kernels, bit for bit.

Which ops match and why: QuantizeLinear, DequantizeLinear, MatMulInteger, ConvInteger (1-D and 2-D),
QLinearMatMul (per-tensor and per-column weight scales) and QLinearConv (1-D dilated, 2-D strided,
grouped, per-channel weight scales, int32 bias) run the same arithmetic as ``nna_emulator.spec``'s
"onnxruntime" profile: exact int32 accumulation, then float32(acc) * float32(x_scale * w_scale /
y_scale) rounded half to even. The float32 multiplier must be formed as onnxruntime forms it (float32
products), which is what these tests pass in. Not compared: the fixed-point profile (onnxruntime has
no gemmlowp requantization), the LSTM cell, layer norm and softmax (no integer onnxruntime kernels),
and Add/Mul (QLinearAdd/QLinearMul are com.microsoft contrib ops with their own lookup-table paths).
"""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from nna_emulator import reference, spec  # noqa: E402


def _run(nodes, inputs: dict, outputs: list, initializers=()):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info(name, dtype, None) for name, dtype in outputs],
        initializer=list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, inputs)


def _const(name, value):
    return helper.make_tensor(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape, value.reshape(-1).tolist())


def test_quantize_and_dequantize_linear():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=4000) * 3).astype(np.float32)
    x[:8] = np.array([0.25, -0.25, 0.75, -0.75, 0.05, 1e6, -1e6, 0.0], np.float32)  # ties and saturation
    scale, zp = np.float32(0.1), np.int8(10)
    (q,) = _run([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])], {"x": x}, [("q", TensorProto.INT8)],
                [_const("s", np.array(scale)), _const("z", np.array(zp))])
    ours = spec.quantize(x.astype(np.float32) / scale, 1.0, int(zp))  # onnxruntime divides in float32
    np.testing.assert_array_equal(q, ours)
    (d,) = _run([helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"])], {"q": q}, [("d", TensorProto.FLOAT)],
                [_const("s", np.array(scale)), _const("z", np.array(zp))])
    np.testing.assert_array_equal(d, ((q.astype(np.int32) - zp).astype(np.float32) * scale))


def test_matmul_integer_equals_reference_accumulators():
    rng = np.random.default_rng(1)
    a = rng.integers(-128, 128, size=(7, 300), dtype=np.int8)
    b = rng.integers(-127, 128, size=(300, 9), dtype=np.int8)
    a_zp = np.int8(-5)
    (acc,) = _run([helper.make_node("MatMulInteger", ["a", "b", "az"], ["y"])], {"a": a, "b": b}, [("y", TensorProto.INT32)],
                  [_const("az", np.array(a_zp))])
    np.testing.assert_array_equal(acc, reference.accumulate(a, int(a_zp), b.T))


@pytest.mark.parametrize("per_column", [False, True])
def test_qlinear_matmul_equals_onnxruntime_profile(per_column):
    rng = np.random.default_rng(2)
    a = rng.integers(-128, 128, size=(16, 256), dtype=np.int8)
    b = rng.integers(-127, 128, size=(256, 32), dtype=np.int8)
    a_scale, a_zp = np.float32(0.021), np.int8(3)
    b_scale = (rng.uniform(0.001, 0.01, size=32) if per_column else np.array(0.004)).astype(np.float32)
    y_scale, y_zp = np.float32(0.35), np.int8(-7)
    b_zp = np.zeros(b_scale.shape, np.int8)
    (y,) = _run([helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])],
                {"a": a, "b": b}, [("y", TensorProto.INT8)],
                [_const("as", np.array(a_scale)), _const("az", np.array(a_zp)), _const("bs", b_scale), _const("bz", b_zp),
                 _const("ys", np.array(y_scale)), _const("yz", np.array(y_zp))])
    multiplier = a_scale * b_scale / y_scale  # float32 arithmetic, as onnxruntime
    ours = reference.linear(a, int(a_zp), b.T, None, multiplier, int(y_zp), profile="onnxruntime")
    mismatch = int((ours != y).sum())
    assert mismatch == 0, f"{mismatch} of {y.size} outputs differ (max |diff| {np.abs(ours.astype(int) - y).max()})"


@pytest.mark.parametrize("dims", [1, 2])
def test_conv_integer_equals_reference_accumulators(dims):
    rng = np.random.default_rng(3 + dims)
    shape = (2, 3, 11) if dims == 1 else (2, 3, 9, 10)
    x = rng.integers(-128, 128, size=shape, dtype=np.int8)
    w = rng.integers(-127, 128, size=(4, 3) + (3,) * dims, dtype=np.int8)
    x_zp = np.int8(6)
    pads = [2, 0] if dims == 1 else [1, 1, 0, 0]  # ONNX order: begin of each axis, then end of each
    node = helper.make_node("ConvInteger", ["x", "w", "xz"], ["y"], pads=pads)
    (acc,) = _run([node], {"x": x}, [("y", TensorProto.INT32)], [_const("w", w), _const("xz", np.array(x_zp))])
    wide = spec.QFormat(32)  # multiplier 1 into a 32-bit output returns the accumulators
    if dims == 1:
        ours = reference.conv1d(x, int(x_zp), w, None, 1.0, 0, pad_left=2, fmt=wide, profile="onnxruntime")
    else:  # our conv2d pads both sides equally: pad the end with the zero point by hand instead
        x_padded = np.pad(x, ((0, 0), (0, 0), (1, 0), (1, 0)), constant_values=x_zp)
        ours = reference.conv2d(x_padded, int(x_zp), w, None, 1.0, 0, fmt=wide, profile="onnxruntime")
    np.testing.assert_array_equal(acc, ours)


@pytest.mark.parametrize("dims, groups", [(1, 1), (1, 4), (2, 1), (2, 2)])
def test_qlinear_conv_equals_onnxruntime_profile(dims, groups):
    rng = np.random.default_rng(10 * dims + groups)
    c_in, c_out = 4, 8
    shape = (2, c_in, 40) if dims == 1 else (2, c_in, 9, 12)
    x = rng.integers(-128, 128, size=shape, dtype=np.int8)
    w = rng.integers(-127, 128, size=(c_out, c_in // groups) + (3,) * dims, dtype=np.int8)
    bias = rng.integers(-20000, 20000, size=c_out).astype(np.int32)
    x_scale, x_zp = np.float32(0.03), np.int8(-4)
    w_scale = rng.uniform(0.002, 0.02, size=c_out).astype(np.float32)
    y_scale, y_zp = np.float32(0.11), np.int8(9)
    kwargs = {"group": groups, "pads": [1] * (2 * dims)}
    if dims == 1:
        kwargs["dilations"] = [2]
        kwargs["pads"] = [2, 2]
    else:
        kwargs["strides"] = [2, 1]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], **kwargs)
    (y,) = _run([node], {"x": x}, [("y", TensorProto.INT8)],
                [_const("xs", np.array(x_scale)), _const("xz", np.array(x_zp)), _const("w", w), _const("ws", w_scale),
                 _const("wz", np.zeros(c_out, np.int8)), _const("ys", np.array(y_scale)), _const("yz", np.array(y_zp)),
                 _const("b", bias)])
    multiplier = x_scale * w_scale / y_scale  # float32 arithmetic, as onnxruntime
    if dims == 1:
        ours = reference.conv1d(x, int(x_zp), w, bias, multiplier, int(y_zp), dilation=2, groups=groups, pad_left=2,
                                pad_right=2, profile="onnxruntime")
    else:
        ours = reference.conv2d(x, int(x_zp), w, bias, multiplier, int(y_zp), stride=(2, 1), padding=(1, 1), groups=groups,
                                profile="onnxruntime")
    mismatch = int((ours != y).sum())
    assert mismatch == 0, f"{mismatch} of {y.size} outputs differ (max |diff| {np.abs(ours.astype(int) - y).max()})"
