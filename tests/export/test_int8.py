"""``asr export --int8``: what each flavour's graphs contain, and the unrolled-cell LSTM graph
(the static flavours' float base, and how LSTMP exports) against PyTorch.

Token equality with sherpa-onnx for every flavour is in ``test_sherpa.py``; the WER of each flavour
on the trained demo model is in recipes/synth/RESULTS.md (``asr bench latency``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402

from asr.checkpoint import load_model, read_checkpoint, save_checkpoint  # noqa: E402
from asr.config import TrainConfig, from_dict, to_dict  # noqa: E402
from asr.models.registry import build_model  # noqa: E402
from export.folder import export_onnx  # noqa: E402
from export.onnx import batch_axes_are_dynamic, read_metadata  # noqa: E402
from tests.conftest import assert_user_error  # noqa: E402

ATOL = 1e-4
GRAPHS = ("encoder.onnx", "decoder.onnx", "joiner.onnx")
AXES = {"x": 0, "state0": 1, "state1": 1, "encoder_out": 0, "new_state0": 1, "new_state1": 1,
        "y": 0, "decoder_out": 0, "logit": 0}


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tiny_fbank, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8")
    r = export_onnx(str(tiny_checkpoint.path), str(out), chunk_feature_frames=16, int8=("dynamic", "static", "accelerator"),
                    calib=str(tiny_fbank / "cuts_train.jsonl.gz"), num_calib=10)
    return out, r


def _ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def _weights_of(path, op_types) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(node, weight, weight scale) for each ``op_types`` node whose weight comes through a
    DequantizeLinear of an initializer (the QDQ pattern); a float initializer weight has scale None."""
    g = onnx.load(str(path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    dq = {n.output[0]: n for n in g.node if n.op_type == "DequantizeLinear"}
    found = []
    for n in g.node:
        if n.op_type not in op_types:
            continue
        w = n.input[0] if n.op_type == "Gather" else n.input[1]
        if w in dq and dq[w].input[0] in init:
            found.append((n.name, init[dq[w].input[0]], init[dq[w].input[1]]))
        elif w in init:
            found.append((n.name, init[w], None))
    return found


def test_every_flavour_is_a_complete_folder_with_the_fp32_metadata(exported):
    out, r = exported
    for flavour in ("dynamic", "static", "accelerator"):
        d = out / f"int8-{flavour}"
        assert sorted(p.name for p in d.iterdir()) == ["bpe.model", "bpe.vocab", "decoder.onnx", "encoder.onnx", "joiner.onnx", "tokens.txt"]
        for g in GRAPHS:
            assert read_metadata(d / g) == read_metadata(out / g), (flavour, g)
        assert (d / "tokens.txt").read_text() == (out / "tokens.txt").read_text()
        assert r["int8"][flavour]["bytes"]["encoder.onnx"] < r["files"]["encoder.onnx"] / 2.5, r["int8"][flavour]
        # on held-out utterances, against float32 on the same chunks and states (the untrained model
        # is harder than a trained one: the demo model gives 38 / 32.5 / 28.7 dB)
        assert r["int8"][flavour]["encoder_snr_db"] > 20, (flavour, r["int8"][flavour])


def test_dynamic_weights_cannot_saturate_on_avx2(exported, tiny_checkpoint):
    out, _ = exported
    d = out / "int8-dynamic"
    ops = _ops(d / "encoder.onnx")
    layers = len(load_model(tiny_checkpoint.path)[0].encoder.stack.layers)
    assert ops.count("DynamicQuantizeLSTM") == layers and "LSTM" not in ops
    g = onnx.load(str(d / "encoder.onnx")).graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "DynamicQuantizeLSTM":
            # W and R within +-64: two uint8 x int8 products then sum to at most 2 * 255 * 64 = 32640,
            # inside VPMADDUBSW's int16 (no saturation on AVX2 without VNNI)
            for w in (init[n.input[1]], init[n.input[2]]):
                assert w.dtype == np.int8 and -64 <= w.min() and w.max() <= 64 and int(w.max()) - int(w.min()) > 64
    joiner = onnx.load(str(d / "joiner.onnx")).graph
    init = {i.name: numpy_helper.to_array(i) for i in joiner.initializer}
    weights = [init[n.input[1]] for n in joiner.node if n.op_type == "MatMulInteger"]
    assert weights and all(w.dtype == np.uint8 for w in weights)  # full-range uint8 weights (U8U8)
    for g_name in GRAPHS:
        assert batch_axes_are_dynamic(d / g_name, AXES) == []


@pytest.mark.parametrize("flavour", ["static", "accelerator"])
def test_static_flavours_have_int8_per_channel_weights_and_float_states(exported, flavour):
    out, _ = exported
    d = out / f"int8-{flavour}"
    enc_ops = _ops(d / "encoder.onnx")
    assert "LSTM" not in enc_ops and "Sigmoid" in enc_ops and "Tanh" in enc_ops  # the unrolled cell
    for g in GRAPHS:
        weights = _weights_of(d / g, ("MatMul", "Gemm", "Conv", "Gather"))
        matmuls = [w for w in weights if w[1].ndim >= 2]
        assert matmuls, g
        for name, w, scale in matmuls:
            assert w.dtype == np.int8, f"{g}: {name} has {w.dtype} weights"
            if "Gather" not in name:
                assert scale.size > 1, f"{g}: {name} is quantized per tensor, expected per channel"
        m = onnx.load(str(d / g))
        for v in list(m.graph.input) + list(m.graph.output):  # states, features and logits stay float
            assert v.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64), (g, v.name)
    if flavour == "static":
        for g in GRAPHS:
            assert batch_axes_are_dynamic(d / g, AXES) == []
        return
    for g in GRAPHS:  # accelerator: every shape fixed, batch 1, symmetric activations
        m = onnx.load(str(d / g))
        for v in list(m.graph.input) + list(m.graph.output):
            dims = v.type.tensor_type.shape.dim
            assert all(dim.HasField("dim_value") for dim in dims), (g, v.name, dims)
            assert dims[AXES[v.name]].dim_value == 1, (g, v.name)
        init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        zps = [init[n.input[2]] for n in m.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
        assert zps and all(not z.any() for z in zps), f"{g}: activation zero points are not all 0"


def test_int8_encoder_streams_close_to_fp32(exported):
    """Each flavour's encoder run chunk by chunk with its own carried state stays near float32."""
    out, _ = exported
    meta = read_metadata(out / "encoder.onnx")
    T, shift = int(meta["T"]), int(meta["decode_chunk_len"])
    L, P, H = int(meta["num_encoder_layers"]), int(meta["d_model"]), int(meta["rnn_hidden_size"])
    x = (np.random.default_rng(0).standard_normal((1, shift * 6 + T, 80)) * 3 - 8).astype(np.float32)

    def run(d):
        s = ort.InferenceSession(str(d / "encoder.onnx"), providers=["CPUExecutionProvider"])
        h, c = np.zeros((L, 1, P), np.float32), np.zeros((L, 1, H), np.float32)
        outs = []
        for i in range(6):
            y, h, c = s.run(None, {"x": x[:, i * shift : i * shift + T], "state0": h, "state1": c})
            outs.append(y)
        return np.concatenate(outs, axis=1)

    ref = run(out)
    for flavour in ("dynamic", "static", "accelerator"):
        got = run(out / f"int8-{flavour}")
        snr = 10 * np.log10((ref**2).sum() / ((ref - got) ** 2).sum())
        assert snr > 15, f"{flavour}: encoder SNR {snr:.1f} dB over 6 streamed chunks"


def _lstmp_checkpoint(tiny_checkpoint, tmp_path):
    ckpt = read_checkpoint(tiny_checkpoint.path)
    cfg = from_dict(TrainConfig, ckpt["config"], "tiny")
    cfg = replace(cfg, model=replace(cfg.model, encoder=replace(cfg.model.encoder, num_layers=2, proj_dim=32)))
    torch.manual_seed(1)
    path = tmp_path / "lstmp.pt"
    save_checkpoint({**ckpt, "config": to_dict(cfg), "model": build_model(cfg.model).state_dict()}, path)
    return path


@pytest.mark.parametrize("batch", [1, 3])
def test_lstmp_exports_as_unrolled_cells_that_stream_like_pytorch(tiny_checkpoint, tmp_path, batch):
    path = _lstmp_checkpoint(tiny_checkpoint, tmp_path)
    out = tmp_path / "onnx"
    export_onnx(str(path), str(out), chunk_feature_frames=16)
    model = load_model(path)[0]
    meta = read_metadata(out / "encoder.onnx")
    assert (meta["d_model"], meta["rnn_hidden_size"], meta["num_encoder_layers"]) == ("32", "96", "2")
    assert "LSTM" not in _ops(out / "encoder.onnx")
    chunk, T, chunks = 16, 21, 4
    x = torch.randn(batch, chunk * chunks + 5, 80, generator=torch.Generator().manual_seed(batch)) * 3 - 8
    with torch.no_grad():
        full = model.encode(x, torch.full((batch,), x.size(1)))[0].numpy()
    sess = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    h, c = (s.numpy() for s in model.encoder.init_state(batch))
    outs = []
    for i in range(chunks):
        y, h, c = sess.run(None, {"x": x[:, i * chunk : i * chunk + T].numpy(), "state0": h, "state1": c})
        outs.append(y)
    got = np.concatenate(outs, axis=1)
    err = np.abs(got - full).max()
    assert err <= ATOL, f"max |onnx - torch| = {err:.3g}"


def test_cli_int8_bad_input(asr_cli, tiny_checkpoint, tiny_fbank, tmp_path):
    out = tmp_path / "o"
    assert_user_error(asr_cli("export", "--checkpoint", tiny_checkpoint.path, "--out", out, "--int8", "static",
                              "--calib", tmp_path / "nope.jsonl.gz"), "nope.jsonl.gz")
    assert_user_error(asr_cli("export", "--checkpoint", tiny_checkpoint.path, "--out", out, "--int8", "dynamic",
                              "--calib", tiny_fbank / "cuts_train.jsonl.gz", "--num-calib", "1"), "--num-calib 1")
    assert not out.exists() or not any(out.iterdir())


def test_dynamic_without_a_manifest_skips_the_snr_and_reexport_drops_stale_flavours(asr_cli, tiny_checkpoint, tmp_path):
    """The tiny checkpoint's dev cuts do not exist here: a dynamic-only export still works (no SNR);
    exporting again without --int8 removes the int8 folder, which would describe another export."""
    out = tmp_path / "o"
    r = asr_cli("export", "--checkpoint", tiny_checkpoint.path, "--out", out, "--int8", "dynamic", "dynamic")
    assert r.returncode == 0, r.stderr
    assert "SNR not measured" in r.stdout and (out / "int8-dynamic" / "encoder.onnx").is_file()
    assert asr_cli("export", "--checkpoint", tiny_checkpoint.path, "--out", out).returncode == 0
    assert not (out / "int8-dynamic").exists() and (out / "encoder.onnx").is_file()


def test_fixed_batch_graphs_run_row_by_row(exported):
    """OnnxTransducer splits batches for the accelerator's batch-1 graphs: N rows at once == N calls."""
    from asr.streaming.onnx import OnnxTransducer

    out, _ = exported
    m = OnnxTransducer(out / "int8-accelerator")
    assert m.fixed_batch == {"encoder": 1, "decoder": 1, "joiner": 1}
    ctx = m.context_size
    y = torch.tensor([[-1] * (ctx - 1) + [0], [3] * ctx, [5] * ctx])
    together = m.predict(y)[0]
    assert torch.equal(together, torch.cat([m.predict(y[i : i + 1])[0] for i in range(3)]))
    e = torch.randn(3, together.size(1))
    assert torch.equal(m.join(e, together), torch.cat([m.join(e[i : i + 1], together[i : i + 1]) for i in range(3)]))
    x = np.random.default_rng(0).standard_normal((2, m.chunking.window_feature_frames, 80)).astype(np.float32) * 3 - 8
    state = m.init_state(2)
    enc, (h, c) = m.encode_chunk(x, state)
    for i in range(2):
        enc_i, (h_i, c_i) = m.encode_chunk(x[i : i + 1], (state[0][:, i : i + 1], state[1][:, i : i + 1]))
        assert torch.equal(enc[i : i + 1], enc_i) and np.array_equal(h[:, i : i + 1], h_i) and np.array_equal(c[:, i : i + 1], c_i)
