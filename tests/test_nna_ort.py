"""The emulator's onnxruntime profile == onnxruntime's own integer kernels, bit for bit.

Which ops match and why: QuantizeLinear, DequantizeLinear, MatMulInteger and QLinearMatMul
(per-tensor and per-column weight scales) run the same arithmetic as ``nna_emulator.spec``'s
"onnxruntime" profile: exact int32 accumulation, then float32(acc) * float32(a_scale * b_scale /
y_scale) rounded half to even. The float32 multiplier must be formed as onnxruntime forms it (float32
products), which is what these tests pass in.
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
