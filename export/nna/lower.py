"""Lowering: a trained LSTM transducer and its calibrated activation ranges -> three integer programs
(encoder chunk with its LSTM state, predictor, joiner) for ``nna_emulator.runtime``.

Weights int8, symmetric, per output channel (layer-norm gains and the embedding per tensor; a weight
on a sub-8-bit codebook per tensor at max |level| / 127, so its levels stay exact); biases int32 at
the accumulator's scale; activations int8, asymmetric per tensor, from the ranges. The LSTM follows
TFLite's 8x8_16 LSTM: gate matmuls int8 x int8 -> int32, requantized to int16 Q3.12; sigmoid/tanh by
65536-entry int16 tables to Q0.15; cell state int16 at a power-of-two scale chosen from its
calibrated range (2x headroom); h int8. The input features are normalised and quantized on the host
(the ``quantize`` op). Joiner logits are int8 by default (``logits_bits=16`` writes them int16).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from asr.compression.common import CODEBOOK_SUFFIX
from asr.errors import UserError
from asr.models.lstm import LSTMEncoder
from asr.models.predictor import StatelessPredictor
from nna_emulator import reference, spec
from nna_emulator.runtime import Op, Program, QTensor

GATE_SCALE = 2.0**-12  # LSTM gate pre-activations: int16 Q3.12
ACT_SCALE = 2.0**-15  # sigmoid / tanh outputs inside the LSTM cell: int16 Q0.15


def check_lowerable(model) -> None:
    """UserError unless :func:`lower` can lower ``model`` (what is lowered today: see the package docstring)."""
    enc = model.encoder
    if not isinstance(enc, LSTMEncoder):
        raise UserError(f"the emulator lowers LSTM transducers only; this model's encoder is {type(enc).__name__} "
                        "(the Conformer and ConvRNN-T lowerings are not written yet)")
    if enc.cfg.proj_dim:
        raise UserError(f"model.encoder.proj_dim={enc.cfg.proj_dim}: LSTM projections (LSTMP) are not lowered yet; "
                        "use a model with proj_dim 0")
    if not isinstance(model.predictor, StatelessPredictor):
        raise UserError("the emulator lowers the stateless predictor only (the LSTM predictor is not lowered yet)")


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def _act(ranges, name: str, fmt=spec.INT8) -> QTensor:
    if name not in ranges:
        raise UserError(f"calibration recorded no values for {name!r}; calibrate on more or longer utterances")
    lo, hi = ranges[name]
    return QTensor(*spec.choose_qparams(lo, hi, fmt), fmt)


def _weights(w: np.ndarray, bias: np.ndarray | None, s_in: float, s_out: float, codebook=None):
    """int8 weights (per output channel; for a codebook weight one scale for the tensor, max |level|
    / 127), int32 bias and per-channel multipliers."""
    s_w = spec.weight_scales(w, axis=0)
    if codebook is not None:
        s_w = np.full_like(s_w, spec.weight_scales(_np(codebook).reshape(1, -1), axis=0)[0])
    w_q = spec.quantize(w, s_w.reshape((-1,) + (1,) * (w.ndim - 1)), 0, spec.INT8_WEIGHT)
    b_q = None if bias is None else spec.quantize_bias(bias, s_in, s_w)
    return w_q, b_q, s_in * s_w / s_out


def _codebook(module, name: str):
    """The levels of a weight on a sub-8-bit codebook (``asr.compression``), else None. Such a weight
    is quantized with one scale for the tensor, max |level| / 127: its levels are then at most 2^b
    int8 codes (exactly the levels S8BQAT and GQ snap to the int8 grid), where per-channel scales
    would re-round them."""
    return getattr(module, name + CODEBOOK_SUFFIX, None)


def _silu(v):
    return v / (1 + np.exp(-v))


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _layer_norm_op(norm: torch.nn.LayerNorm, x: str, y: str, t: dict) -> Op:
    gamma, beta = _np(norm.weight), _np(norm.bias)
    s_g = max(float(np.abs(gamma).max()), 1e-12) / spec.INT8_WEIGHT.qmax
    acc_scale = 2.0**-spec.LN_FRAC_BITS * s_g
    return Op("layer_norm", (x,), (y,), {
        "gamma": spec.quantize(gamma, s_g, 0, spec.INT8_WEIGHT), "beta": spec.quantize_bias(beta, acc_scale, 1.0),
        "multiplier": acc_scale / t[y].scale, "eps_int": reference.layer_norm_eps(norm.eps, t[x].scale, gamma.size)})


def _linear_op(layer: torch.nn.Linear, x: str, y: str, t: dict) -> Op:
    w, b, m = _weights(_np(layer.weight), None if layer.bias is None else _np(layer.bias), t[x].scale, t[y].scale,
                       _codebook(layer, "weight"))
    return Op("linear", (x,), (y,), {"w": w, "bias": b, "multiplier": m})


def _lower_encoder(model, r) -> Program:
    enc = model.encoder
    t: dict[str, QTensor] = {}
    ops: list[Op] = []
    t["x0"] = _act(r, "x0")
    ops.append(Op("quantize", ("feats",), ("x0",), {"mean": _np(enc.normalize.mean), "inv_std": _np(enc.normalize.inv_std)}))
    ops.append(Op("reshape", ("x0",), ("x0_4d",), {"shape": (0, 1, -1, enc.normalize.mean.numel())}))  # (N, 1, T, F)
    t["x0_4d"] = t["x0"]
    prev = "x0_4d"
    conv = enc.subsampling.conv
    for i, name in ((0, "conv1"), (2, "conv2"), (4, "conv3")):
        layer = conv[i]
        t[name + "_pre"], t[name] = _act(r, name + "_pre"), _act(r, name)
        w, b, m = _weights(_np(layer.weight), _np(layer.bias), t[prev].scale, t[name + "_pre"].scale,
                           _codebook(layer, "weight"))
        ops.append(Op("conv2d", (prev,), (name + "_pre",), {"w": w, "bias": b, "multiplier": m, "stride": layer.stride,
                                                              "padding": layer.padding}))
        pre, post = t[name + "_pre"], t[name]
        ops.append(Op("lookup", (name + "_pre",), (name,),
                      {"table": reference.activation_table(_silu, pre.scale, pre.zero_point, post.scale, post.zero_point)}))
        prev = name
    ops.append(Op("permute", ("conv3",), ("conv3_t",), {"perm": (0, 2, 1, 3)}))
    ops.append(Op("reshape", ("conv3_t",), ("sub_in",), {"shape": (0, 0, -1)}))
    t["conv3_t"] = t["sub_in"] = t["conv3"]
    t["sub"] = _act(r, "sub")
    ops.append(_linear_op(enc.subsampling.out, "sub_in", "sub", t))
    stack = enc.stack
    t["ln_in"] = _act(r, "ln_in")
    ops.append(_layer_norm_op(stack.input_norm, "sub", "ln_in", t))
    x = "ln_in"
    inputs, outputs = ["feats"], ["enc_proj"]
    for i, lstm in enumerate(stack.layers):
        h_q = _act(r, f"h{i}")
        c_max = max(abs(v) for v in r[f"c{i}"])
        cell_bits = int(min(max(-math.log2(spec.pot_scale(2 * c_max)), 0), 30))
        c_q = QTensor(2.0**-cell_bits, 0, spec.INT16)
        for name in (f"h_in{i}", f"h_out{i}", f"y{i}"):
            t[name] = h_q
        t[f"c_in{i}"] = t[f"c_out{i}"] = c_q
        w_ih, w_hh = _np(lstm.weight_ih_l0), _np(lstm.weight_hh_l0)
        w_ih_q, b_q, mult_ih = _weights(w_ih, _np(lstm.bias_ih_l0 + lstm.bias_hh_l0), t[x].scale, GATE_SCALE,
                                        _codebook(lstm, "weight_ih_l0"))
        w_hh_q, _, mult_hh = _weights(w_hh, None, h_q.scale, GATE_SCALE, _codebook(lstm, "weight_hh_l0"))
        table16 = (spec.INT16, spec.INT16)
        ops.append(Op("lstm", (x, f"h_in{i}", f"c_in{i}"), (f"y{i}", f"h_out{i}", f"c_out{i}"), {
            "w_ih": w_ih_q, "w_hh": w_hh_q, "bias": b_q, "mult_ih": mult_ih, "mult_hh": mult_hh, "cell_frac_bits": cell_bits,
            "sigmoid": reference.activation_table(_sigmoid, GATE_SCALE, 0, ACT_SCALE, 0, *table16),
            "tanh": reference.activation_table(np.tanh, GATE_SCALE, 0, ACT_SCALE, 0, *table16),
            "tanh_cell": reference.activation_table(np.tanh, c_q.scale, 0, ACT_SCALE, 0, *table16),
            "h_multiplier": 2.0**-30 / h_q.scale}))
        inputs += [f"h_in{i}", f"c_in{i}"]
        outputs += [f"h_out{i}", f"c_out{i}"]
        if lstm.hidden_size == lstm.input_size:  # residual, as LSTMStack
            t[f"res{i}"] = _act(r, f"res{i}")
            ops.append(Op("add", (f"y{i}", x), (f"res{i}",)))
            x = f"res{i}"
        else:
            x = f"y{i}"
    t["ln_out"], t["enc_proj"] = _act(r, "ln_out"), _act(r, "enc_proj")
    ops.append(_layer_norm_op(stack.output_norm, x, "ln_out", t))
    ops.append(_linear_op(model.joiner.encoder_proj, "ln_out", "enc_proj", t))
    return Program("encoder", tuple(inputs), tuple(outputs), ops, t)


def _lower_predictor(model, r) -> Program:
    pred = model.predictor
    t: dict[str, QTensor] = {}
    table = _np(pred.embedding.weight)
    s_e = max(float(np.abs(table).max()), 1e-12) / spec.INT8_WEIGHT.qmax
    t["emb"] = QTensor(s_e, 0)
    ops = [Op("embedding", ("ids",), ("emb",), {"w": spec.quantize(table, s_e, 0, spec.INT8_WEIGHT)})]
    lo, hi = r["pred_act"]
    t["pred_act"] = QTensor(*spec.choose_qparams(0.0, hi))  # min 0: the output saturation is the ReLU
    if pred.conv is not None:
        ops.append(Op("permute", ("emb",), ("emb_t",), {"perm": (0, 2, 1)}))  # (N, D, C)
        t["emb_t"] = t["emb"]
        conv = pred.conv
        w, b, m = _weights(_np(conv.weight), None if conv.bias is None else _np(conv.bias), s_e, t["pred_act"].scale,
                           _codebook(conv, "weight"))
        ops.append(Op("conv1d", ("emb_t",), ("pred_act3",), {"w": w, "bias": b, "multiplier": m, "groups": conv.groups}))
        t["pred_act3"] = t["pred_act"]
        ops.append(Op("reshape", ("pred_act3",), ("pred_act",), {"shape": (0, -1)}))  # (N, D, 1) -> (N, D)
    else:
        ops.append(Op("reshape", ("emb",), ("emb_last",), {"shape": (0, -1)}))
        t["emb_last"] = t["emb"]
        # ReLU at the embedding's scale (zero point 0), then requantize through an add-free linear path
        t["pred_act"] = t["emb"]
        ops.append(Op("clip", ("emb_last",), ("pred_act",), {"lo": 0, "hi": spec.INT8.qmax}))
    t["pred_proj"] = _act(r, "pred_proj")
    ops.append(_linear_op(model.joiner.predictor_proj, "pred_act", "pred_proj", t))
    return Program("predictor", ("ids",), ("pred_proj",), ops, t)


def _lower_joiner(model, r, enc_q: QTensor, pred_q: QTensor, logits_bits: int) -> Program:
    t = {"enc_proj": enc_q, "pred_proj": pred_q, "join_sum": _act(r, "join_sum"), "join_act": QTensor(1.0 / 127, 0)}
    fmt = spec.INT8 if logits_bits == 8 else spec.INT16
    t["logits"] = _act(r, "logits", fmt)
    s, a = t["join_sum"], t["join_act"]
    ops = [
        Op("add", ("enc_proj", "pred_proj"), ("join_sum",)),
        Op("lookup", ("join_sum",), ("join_act",), {"table": reference.activation_table(np.tanh, s.scale, s.zero_point, a.scale, 0)}),
        _linear_op(model.joiner.output, "join_act", "logits", t),
    ]
    return Program("joiner", ("enc_proj", "pred_proj"), ("logits",), ops, t)


def lower(model, ranges: dict, logits_bits: int = 8) -> tuple[Program, Program, Program]:
    """(encoder, predictor, joiner) programs of a trained LSTM transducer from calibrated ranges."""
    check_lowerable(model)
    if logits_bits not in (8, 16):
        raise UserError(f"logits_bits={logits_bits}: use 8 or 16")
    encoder = _lower_encoder(model, ranges)
    predictor = _lower_predictor(model, ranges)
    joiner = _lower_joiner(model, ranges, encoder.tensors["enc_proj"], predictor.tensors["pred_proj"], logits_bits)
    return encoder, predictor, joiner
