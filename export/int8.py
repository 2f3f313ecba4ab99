"""int8 flavours of an exported model folder (``asr export --int8 dynamic|static|accelerator``).

Each flavour is a complete sherpa-onnx model folder (``encoder/decoder/joiner.onnx``, ``tokens.txt``,
``bpe.model``, the same metadata) next to the float32 one. The choices, measured on the demo model
(``recipes/synth/RESULTS.md``):

* ``dynamic``: onnxruntime ``quantize_dynamic`` of the float32 graphs: ``MatMul``, ``Gemm`` and the
  ``LSTM`` op (which becomes ``DynamicQuantizeLSTM``) in every graph, plus the embedding ``Gather``
  of the decoder; activations are quantized per call. With full-range int8 weights (icefall's
  recipe) x86 CPUs without VNNI saturate in ``VPMADDUBSW`` (uint8 x int8 pairs summed in int16) and
  lose 20+ dB of encoder SNR. So MatMul/Gemm weights are **uint8** (the best SNR of the variants
  measured) and the LSTM weights, which onnxruntime always quantizes to int8, are limited to 7 bits
  (``reduce_range``). The subsampling ``Conv`` stays float (``ConvInteger`` was slower than float
  here). onnxruntime CPU only.
* ``static``: QDQ, calibrated on real streaming chunks *with their carried states* (the float model
  run chunk by chunk over ``calib`` utterances, and greedy search for the decoder and joiner inputs).
  Per-channel symmetric int8 weights, int8 inputs, float outputs, and ``op_types_to_quantize``
  restricted to ``MatMul``/``Gemm``/``Conv`` (+ the decoder's ``Gather``) so states, residual adds
  and the gate nonlinearities stay float. The encoder is the unrolled-cell graph
  (:class:`export.onnx.UnrolledLSTMStack`): QDQ leaves an ``LSTM`` op's weights float, unrolled every
  LSTM weight is an int8 MatMul initializer. Dynamic batch: beam search and batched streams work.
* ``accelerator``: the ``static`` recipe on graphs with **every shape fixed** (batch 1, one chunk of
  ``T`` frames) and symmetric activations (zero points 0, what TensorRT and most NNAs require), so an
  accelerator that cannot run ``LSTM`` or dynamic shapes gets int8 weights for every MatMul, Conv and
  the embedding. With batch fixed at 1, sherpa-onnx can decode one stream with greedy search only.

A biasing model (``bias_encoder.onnx`` in the folder): ``dynamic`` and ``static`` quantize its encoder
and decoder graphs, adapters included (``static`` calibrates them on a short list), and copy the float
phrase encoder, which runs once per list; ``accelerator`` is refused (a list of any length is not a
fixed shape).

Shape legend: N batch, T frames per encoder call, F mel bins, J joiner dim.
"""

from __future__ import annotations

import logging
import shutil
from itertools import islice
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from asr.chunking import Chunking
from asr.data.dataset import load_cuts
from asr.decoding.search import greedy_search
from asr.errors import UserError
from asr.streaming.onnx import OnnxTransducer
from asr.streaming.pytorch import is_lstm
from export.onnx import (
    BIAS_GRAPH,
    GRAPHS,
    PARITY_PHRASES,
    SIDE_FILES,
    add_metadata,
    cpu_session,
    read_metadata,
    write_graphs,
)

FLAVOURS = ("dynamic", "static", "accelerator")
STATIC = ("static", "accelerator")
HELD_OUT_FRACTION = 0.2  # of the calibration utterances, used only to report the encoder's SNR


def calibration_features(cuts: str, num: int) -> list[np.ndarray]:
    """(T, F) float32 features of the first ``num`` cuts of a manifest written by ``asr features``."""
    if num < 2:
        raise UserError(f"--num-calib {num}: need at least 2 utterances (one is held out to measure the SNR)")
    feats = [c.load_features().astype(np.float32) for c in islice(load_cuts(cuts), num)]
    if len(feats) < 2:
        raise UserError(f"{cuts}: {len(feats)} utterance(s), need at least 2 for calibration and the SNR; "
                        "pass a bigger manifest with --calib")
    return feats


class _Recorder(OnnxTransducer):
    """A model folder's graphs, noting every input they are given in ``feeds`` (graph -> its inputs,
    one dict per call)."""

    def __init__(self, model_dir: Path) -> None:
        super().__init__(model_dir)
        self.feeds: dict[str, list[dict]] = {g: [] for g in GRAPHS}

    def encode_chunk(self, x, state):
        self.feeds["encoder.onnx"].append({"x": x, "state0": state[0], "state1": state[1], **self._bias["encoder"]})
        return super().encode_chunk(x, state)

    def predict(self, y_ctx, state=None):
        self.feeds["decoder.onnx"].append({"y": y_ctx.to(torch.int64).numpy(), **self._bias["decoder"]})
        return super().predict(y_ctx, state)

    def join(self, enc, pred):
        self.feeds["joiner.onnx"].append({"encoder_out": np.ascontiguousarray(enc.numpy()),
                                          "decoder_out": np.ascontiguousarray(pred.numpy())})
        return super().join(enc, pred)


def collect_inputs(model_dir: Path, feats: list[np.ndarray]) -> dict[str, list[dict]]:
    """Feeds for each graph of ``model_dir`` as sherpa-onnx would make them at batch 1: encoder
    windows of ``T`` frames advancing by ``decode_chunk_len`` with the state carried, and the decoder
    and joiner inputs of greedy search (``asr.decoding.search``) on the encoder output. A biasing
    model's graphs get a short list (``export.onnx.PARITY_PHRASES``), so its adapters see phrases."""
    m = _Recorder(model_dir)
    if m.biased:
        m.set_bias_list(PARITY_PHRASES)
    window, chunk = m.chunking.window_feature_frames, m.chunking.chunk_feature_frames
    for x in feats:
        state, search_state = m.init_state(1), None
        for start in range(0, len(x) - window + 1, chunk):
            enc, state = m.encode_chunk(x[None, start : start + window], state)
            search_state = greedy_search(m, enc, torch.tensor([enc.size(1)]), search_state)
    return m.feeds


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, feeds: list[dict]) -> None:
        self.it = iter(feeds)

    def get_next(self):
        return next(self.it, None)


def _preprocess(src: Path, dst: Path) -> None:
    """onnxruntime's quant_pre_process: folds the Identity nodes the exporter puts in front of shared
    weights (without it the quantizer silently skips those MatMuls)."""
    try:
        quant_pre_process(str(src), str(dst))
    except Exception:  # symbolic shape inference asserts on some graphs
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


def activation_matmuls(path: Path) -> list[str]:
    """The MatMul nodes without a weight (a 2-D initializer) among their inputs: the Conformer's attention
    scores (Q K^T) and weighted values, a biasing adapter's attention. Quantization leaves them float:
    onnxruntime runs such a MatMul, quantized (dynamic) or fused from QDQ (static), as MatMulIntegerToFloat
    with a per-tensor zero point on a 4-D second input, and refuses it at run time ("MatmulInteger : b
    zero point is not valid": the medium recipe's Conformer)."""
    graph = onnx.load(str(path)).graph
    # a weight is a 2-D initializer; with every shape fixed (the accelerator flavour) the exporter folds
    # the relative-position term into a constant of higher rank, which must stay float as well
    weights = {init.name for init in graph.initializer if len(init.dims) == 2}
    return [n.name for n in graph.node if n.op_type == "MatMul" and not (set(n.input) & weights)]


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    noise = float(((ref - got) ** 2).sum())
    return float("inf") if noise == 0 else 10 * float(np.log10(float((ref**2).sum()) / noise))


def encoder_snr(fp32_dir: Path, int8_dir: Path, feeds: list[dict]) -> float:
    """SNR (dB) of the int8 encoder's output against float32 on the same chunks and states."""
    a, b = cpu_session(fp32_dir / "encoder.onnx"), cpu_session(int8_dir / "encoder.onnx")
    ref = np.concatenate([a.run(None, f)[0].ravel() for f in feeds])
    got = np.concatenate([b.run(None, f)[0].ravel() for f in feeds])
    return snr_db(ref, got)


def make_flavour(model, fp32_dir: Path, out: Path, flavour: str, chunking: Chunking, calib_x: list[np.ndarray]) -> dict:
    """Write the ``flavour`` folder ``out`` from the float32 export in ``fp32_dir`` (and ``model``,
    for the unrolled graphs). Returns bytes per graph and the encoder SNR on held-out utterances."""
    out.mkdir(parents=True)
    work = out.parent / f".{flavour}-work"
    work.mkdir()
    root_level = logging.getLogger().level
    # the quantizers log advice per node on the root logger ("Bias of Gemm node ... is not constant":
    # the unrolled cell's h @ R + x_t W; such a Gemm stays a float Gemm fed by int8 DequantizeLinear)
    logging.getLogger().setLevel(logging.ERROR)
    try:
        held = max(1, int(len(calib_x) * HELD_OUT_FRACTION))
        fit_x, held_x = calib_x[:-held], calib_x[-held:]
        if flavour == "dynamic":
            base = fp32_dir
        else:
            base = work / "float"
            base.mkdir()
            write_graphs(model, base, chunking, unrolled=is_lstm(model), fixed_batch=1 if flavour == "accelerator" else None)
            shutil.copyfile(fp32_dir / "tokens.txt", base / "tokens.txt")  # OnnxTransducer (collect_inputs) reads it
            calib = collect_inputs(base, fit_x)
            if not calib["encoder.onnx"]:
                raise UserError(f"calibration: none of the {len(fit_x)} utterances is longer than one encoder call "
                                f"({chunking.window_feature_frames} frames); pass longer or more utterances with --calib/--num-calib")
        for g in GRAPHS:
            pre = work / f"pre-{g}"
            _preprocess(base / g, pre)
            if flavour == "dynamic":
                # two passes: onnxruntime quantizes LSTM weights to int8 whatever weight_type says, so
                # they get reduce_range (7 bits) instead; MatMul/Gemm weights get full-range uint8
                lstm = work / f"lstm-{g}"
                quantize_dynamic(str(pre), str(lstm), op_types_to_quantize=["LSTM"], reduce_range=True)
                ops = ["MatMul", "Gemm"] + (["Gather"] if g == "decoder.onnx" else [])
                quantize_dynamic(str(lstm), str(out / g), op_types_to_quantize=ops, weight_type=QuantType.QUInt8,
                                 nodes_to_exclude=activation_matmuls(lstm))
            else:
                ops = ["MatMul", "Gemm", "Conv"] + (["Gather"] if g == "decoder.onnx" else [])
                quantize_static(str(pre), str(out / g), _Reader(calib[g]), quant_format=QuantFormat.QDQ,
                                op_types_to_quantize=ops, nodes_to_exclude=activation_matmuls(pre),
                                per_channel=True, activation_type=QuantType.QInt8,
                                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                                extra_options={"ActivationSymmetric": flavour == "accelerator", "WeightSymmetric": True,
                                               # float outputs: an int8 (N, T', D) subsampling output
                                               # cost 8 dB of encoder SNR (24 vs 32.5 dB)
                                               "OpTypesToExcludeOutputQuantization": ops})
            add_metadata(out / g, read_metadata(base / g))  # the quantizers keep it today; do not depend on that
        for f in SIDE_FILES:
            shutil.copyfile(fp32_dir / f, out / f)
        if (base / BIAS_GRAPH).is_file():  # a biasing model's phrase encoder stays float: it runs once per list
            shutil.copyfile(base / BIAS_GRAPH, out / BIAS_GRAPH)
        held_feeds = collect_inputs(base, held_x)["encoder.onnx"] if held_x else []
        snr = encoder_snr(base, out, held_feeds) if held_feeds else None  # None: nothing to measure on
    finally:
        logging.getLogger().setLevel(root_level)
        shutil.rmtree(work, ignore_errors=True)
    return {"bytes": {g: (out / g).stat().st_size for g in GRAPHS}, "encoder_snr_db": snr,
            "calib_utts": len(fit_x), "snr_utts": len(held_x)}
