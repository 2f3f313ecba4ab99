"""``asr bench emulator``: the NNA emulator's speed, side by side in one run, all on ONE core (BLAS, onnxruntime and torch
are pinned to one thread; the Numba kernels are serial):

1. int8 GEMM, x (256, 512) by w (512, 512) with int32 bias and per-channel requantization to int8:
   our Numba kernel (``nna_emulator.ops.linear``), the NumPy int64 reference
   (``nna_emulator.reference.linear``), float32 NumPy matmul (BLAS, no requantization) and
   onnxruntime's int8 kernel (QLinearMatMul, int8 x int8 -> int8, per-tensor: its fastest form).
2. One LSTM step (batch 1) of the demo model's layer size (320 -> 4 x 320 gates, int16 cell):
   emulated (Numba and reference) vs torch float32 ``nn.LSTMCell``.
3. Emulated streaming real-time factor of a whole LSTM transducer (the demo architecture,
   3 x 320 LSTM, 3.1 M parameters; or ``--checkpoint`` with ``--cuts``): encoder chunk by chunk
   (32 feature frames) + greedy search on the emulated predictor and joiner.

    asr bench emulator
    asr bench emulator --checkpoint exp/demo/final.pt --cuts data/fbank/synth-small/cuts_test.jsonl.gz

The last line is ``numba_vs_reference=<a> numba_vs_blas=<b> numba_vs_ort=<c>``: throughput ratios
for the GEMM (reference time / Numba time, and so on). Goals: a >= 50, b >= 0.3, c >= 0.5; RTF < 1.
LLVM's AVX-512 code for the GEMM loop is slower than its AVX2 code (1.45x on an Ice Lake Xeon):
``NUMBA_CPU_NAME=haswell asr bench emulator`` shows the difference.

The benchmark re-executes itself with BLAS pinned to one thread (``OMP_NUM_THREADS=1`` etc.), which
NumPy reads once when it loads.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import llvmlite.binding as llvm
import numba
import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from asr.checkpoint import checkpoint_tokenizer, load_model
from asr.config import load_config
from asr.decoding.search import search
from asr.models.registry import build_model
from export.nna import NNATransducer, calibrate, one_utterance_batches
from nna_emulator import ops, reference, spec

REPO = Path(__file__).resolve().parents[2]


def timed(fn, repeat: int, warmup: int = 1) -> float:
    """Median seconds of ``repeat`` calls after ``warmup`` calls (the first compiles Numba kernels)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ort_qlinear_matmul(x_q, w_q, x_scale, w_scale, y_scale, x_zp, y_zp):
    inits = [numpy_helper.from_array(w_q, "w"), numpy_helper.from_array(np.float32(x_scale), "xs"),
             numpy_helper.from_array(np.int8(x_zp), "xz"), numpy_helper.from_array(np.float32(w_scale), "ws"),
             numpy_helper.from_array(np.int8(0), "wz"), numpy_helper.from_array(np.float32(y_scale), "ys"),
             numpy_helper.from_array(np.int8(y_zp), "yz")]
    node = helper.make_node("QLinearMatMul", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.INT8, x_q.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.INT8, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, {"x": x_q})


def bench_gemm(repeat: int) -> dict:
    rng = np.random.default_rng(0)
    n, k, m = 256, 512, 512
    x_q = rng.integers(-128, 128, size=(n, k), dtype=np.int8)
    w = rng.normal(0, 0.05, size=(m, k))
    s_x, x_zp, s_y, y_zp = 0.05, 3, 0.2, -2
    s_w = spec.weight_scales(w)
    w_q = spec.quantize(w, s_w[:, None], 0, spec.INT8_WEIGHT)
    bias = spec.quantize_bias(rng.normal(0, 0.1, m), s_x, s_w)
    mult = s_x * s_w / s_y
    assert np.array_equal(ops.linear(x_q, x_zp, w_q, bias, mult, y_zp), reference.linear(x_q, x_zp, w_q, bias, mult, y_zp))
    xf, wf = x_q.astype(np.float32), w_q.astype(np.float32).T.copy()
    w_t = np.ascontiguousarray(w_q.T)  # QLinearMatMul takes (K, M)
    s_w_tensor = float(s_w.max())
    t = {
        "numba int8": timed(lambda: ops.linear(x_q, x_zp, w_q, bias, mult, y_zp), repeat),
        "numpy int64 reference": timed(lambda: reference.linear(x_q, x_zp, w_q, bias, mult, y_zp), max(repeat // 10, 3)),
        "float32 BLAS matmul": timed(lambda: xf @ wf, repeat),
        "onnxruntime QLinearMatMul": timed(ort_qlinear_matmul(x_q, w_t, s_x, s_w_tensor, s_y, x_zp, y_zp), repeat),
    }
    macs = n * k * m
    print(f"## int8 GEMM ({n} x {k}) by ({k} x {m}), one core")
    print("| kernel | ms | GMAC/s | Numba speed-up |")
    print("|---|---|---|---|")
    for name, sec in t.items():
        print(f"| {name} | {sec * 1e3:.3f} | {macs / sec / 1e9:.2f} | {sec / t['numba int8']:.2f} |")
    return t


def bench_lstm_step(repeat: int) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    hid = 320
    w_ih = rng.integers(-127, 128, size=(4 * hid, hid), dtype=np.int8)
    w_hh = rng.integers(-127, 128, size=(4 * hid, hid), dtype=np.int8)
    bias = rng.integers(-5000, 5000, size=4 * hid).astype(np.int32)
    x = rng.integers(-128, 128, size=(1, hid), dtype=np.int8)
    h = rng.integers(-128, 128, size=(1, hid), dtype=np.int8)
    c = rng.integers(-20000, 20000, size=(1, hid)).astype(np.int16)
    sig = reference.activation_table(lambda v: 1 / (1 + np.exp(-v)), 2.0**-12, 0, 2.0**-15, 0, spec.INT16, spec.INT16)
    tanh = reference.activation_table(np.tanh, 2.0**-12, 0, 2.0**-15, 0, spec.INT16, spec.INT16)
    tanh_c = reference.activation_table(np.tanh, 2.0**-11, 0, 2.0**-15, 0, spec.INT16, spec.INT16)

    def step(k):
        gx = k.linear(x, 1, w_ih, bias, 1e-3, 0, fmt=spec.INT16).astype(np.int32)
        gh = k.linear(h, 0, w_hh, None, 1e-3, 0, fmt=spec.INT16)
        gates = np.clip(gx + gh, spec.INT16.qmin, spec.INT16.qmax).astype(np.int16)
        return k.lstm_cell(gates, c, 11, sig, tanh, tanh_c, 2.0**-30 * 127, 0)

    assert all(np.array_equal(a, b) for a, b in zip(step(ops), step(reference)))
    cell = torch.nn.LSTMCell(hid, hid).eval()
    xt, state = torch.randn(1, hid), (torch.zeros(1, hid), torch.zeros(1, hid))

    def torch_step():
        with torch.no_grad():
            cell(xt, state)

    t = {"emulated, Numba": timed(lambda: step(ops), repeat * 10), "emulated, reference": timed(lambda: step(reference), repeat),
         "torch float32 LSTMCell": timed(torch_step, repeat * 10)}
    print(f"\n## one LSTM step, batch 1, {hid} -> 4 x {hid} (the demo model's layer), one core")
    print("| implementation | us per step |")
    print("|---|---|")
    for name, sec in t.items():
        print(f"| {name} | {sec * 1e6:.1f} |")


def bench_rtf(checkpoint: str | None, cuts: str | None, num_utts: int) -> float:
    torch.set_num_threads(1)
    if checkpoint:
        model, cfg, ckpt = load_model(checkpoint)
        tok = checkpoint_tokenizer(ckpt, cfg, checkpoint)
        batches = one_utterance_batches(cuts or cfg.data.dev_cuts, tok, num_utts)
        what = f"{checkpoint} on {len(batches)} utterances of {cuts or cfg.data.dev_cuts}"
    else:
        cfg = load_config(str(REPO / "recipes/synth/lstm.yaml"), ["model.vocab_size=32"])
        torch.manual_seed(0)
        model = build_model(cfg.model).eval()
        g = torch.Generator().manual_seed(0)
        batches = [{"x": torch.randn(1, 300, 80, generator=g) * 2, "x_lens": torch.tensor([300]),
                    "y": torch.randint(1, 32, (1, 20), generator=g), "y_lens": torch.tensor([20])} for _ in range(num_utts)]
        what = f"the demo architecture (untrained) on {num_utts} random 3 s inputs"
    emu = NNATransducer.from_model(model, calibrate(model, batches[:20]))
    emu.encode(batches[0]["x"][:, :50], torch.tensor([50]))  # compile the kernels
    audio_s = compute_s = 0.0
    for b in batches:
        audio_s += b["x"].shape[1] / 100
        t0 = time.perf_counter()
        search(emu, *emu.encode(b["x"], b["x_lens"]), "greedy")
        compute_s += time.perf_counter() - t0
    rtf = compute_s / audio_s
    print(f"\n## emulated streaming LSTM transducer, one core: {what}")
    print(f"| audio s | compute s | RTF | goal |\n|---|---|---|---|\n| {audio_s:.1f} | {compute_s:.2f} | {rtf:.4f} | < 1 |")
    return rtf



def run(args) -> None:
    print(f"Numba {numba.__version__} compiling for {numba.config.CPU_NAME or llvm.get_host_cpu_name()} "
          "(set NUMBA_CPU_NAME=haswell on an AVX-512 host for this kernel's faster AVX2 code)\n")
    t = bench_gemm(args.repeat)
    bench_lstm_step(args.repeat)
    bench_rtf(args.checkpoint, args.cuts, args.num_utts)
    kernel = t["numba int8"]
    print(f"numba_vs_reference={t['numpy int64 reference'] / kernel:.2f} numba_vs_blas={t['float32 BLAS matmul'] / kernel:.2f} "
          f"numba_vs_ort={t['onnxruntime QLinearMatMul'] / kernel:.2f}")
