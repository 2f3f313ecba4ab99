"""Lower a trained LSTM transducer to the emulated NNA (``nna_emulator.runtime``) and decode with it.

Steps (``asr emulate`` runs them):
1. :func:`calibrate`: run the float model, decomposed exactly as the lowering computes it
   (:func:`float_encoder`, :func:`float_predictor`), over real utterances and record the min/max
   of every tensor the NNA holds: the activation ranges.
2. :func:`lower`: quantize weights (int8, symmetric, per output channel; layer-norm gains and the
   embedding per tensor), biases (int32 at the accumulator's scale) and activations (int8,
   asymmetric per tensor, from the ranges), and emit three programs: encoder (one streaming chunk,
   with the LSTM state as inputs and outputs), predictor and joiner.
3. :class:`NNATransducer`: the programs behind the interface ``asr.decoding.search`` uses (encode /
   predict / join), so greedy and modified beam search run unchanged on the emulated integers. The
   encoder runs chunk by chunk (``chunk_frames`` feature frames + the subsampling's 5 overlap
   frames, as sherpa-onnx feeds it) with its integer state carried between chunks.

Numerics of the lowered LSTM (TFLite's 8x8_16 LSTM): gate matmuls int8 x int8 -> int32, requantized
to int16 Q3.12; sigmoid/tanh by 65536-entry int16 tables to Q0.15; cell state int16 at a power-of-two
scale chosen from its calibrated range (2x headroom); h int8. The input features (float log-mel from
the host's front end) are normalised and quantized on the host, the ``quantize`` op. Joiner logits are
int8 by default (``logits_bits=16`` writes them int16).

What is lowered: the LSTM encoder (conv subsampling with SiLU tables, layer norms, residual LSTM
layers without projection), the stateless predictor (embedding, context conv with fused ReLU) and
the joiner. Not yet: LSTM projections (LSTMP), the LSTM predictor, the Conformer (attention needs
the integer softmax and a matmul of two activations, plus the relative-position bias) and the
ConvRNN-T (its conv blocks are ``conv2d``/``conv1d``/``mul`` ops that exist, but its squeeze-and-
excitation running mean and GLU are not lowered): :func:`lower` says so for those models.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from asr.errors import UserError
from nna_emulator import reference, spec
from nna_emulator.runtime import Op, Program, QTensor

GATE_SCALE = 2.0**-12  # LSTM gate pre-activations: int16 Q3.12
ACT_SCALE = 2.0**-15  # sigmoid / tanh outputs inside the LSTM cell: int16 Q0.15


class Ranges:
    """Running min/max per tensor name."""

    def __init__(self) -> None:
        self.ranges: dict[str, tuple[float, float]] = {}

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if x.numel():
            lo, hi = float(x.min()), float(x.max())
            old = self.ranges.get(name)
            self.ranges[name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
        return x


def _check_lowerable(model) -> None:
    from asr.models.lstm import LSTMEncoder
    from asr.models.predictor import StatelessPredictor

    enc = model.encoder
    if not isinstance(enc, LSTMEncoder):
        raise UserError(f"the emulator lowers LSTM transducers only; this model's encoder is {type(enc).__name__} "
                        "(the Conformer and ConvRNN-T lowerings are not written yet)")
    if enc.cfg.proj_dim:
        raise UserError(f"model.encoder.proj_dim={enc.cfg.proj_dim}: LSTM projections (LSTMP) are not lowered yet; "
                        "use a model with proj_dim 0")
    if not isinstance(model.predictor, StatelessPredictor):
        raise UserError("the emulator lowers the stateless predictor only (the LSTM predictor is not lowered yet)")


# ---- float twins of the lowered graph (calibration, and the parity test with the torch model) -----


def float_encoder(model, x: torch.Tensor, obs=lambda name, t: t) -> torch.Tensor:
    """The encoder + encoder projection in float, op for op as :func:`lower` emits them.
    x (N, T, F) -> (N, T', J); ``obs(name, tensor)`` sees every intermediate."""
    enc = model.encoder
    h = obs("x0", enc.normalize(x))
    conv = enc.subsampling.conv
    h = h.unsqueeze(1)
    for i, name in ((0, "conv1"), (2, "conv2"), (4, "conv3")):
        h = obs(name, torch.nn.functional.silu(obs(name + "_pre", conv[i](h))))
    n, c, t, f = h.shape
    h = obs("sub", enc.subsampling.out(h.permute(0, 2, 1, 3).reshape(n, t, c * f)))
    stack = enc.stack
    h = obs("ln_in", stack.input_norm(h))
    for i, lstm in enumerate(stack.layers):
        y = _float_lstm_layer(lstm, h, i, obs)
        h = obs(f"res{i}", y + h) if y.shape == h.shape else y
    h = obs("ln_out", stack.output_norm(h))
    return obs("enc_proj", model.joiner.encoder_proj(h))


def _float_lstm_layer(lstm: torch.nn.LSTM, x: torch.Tensor, i: int, obs) -> torch.Tensor:
    w_ih, w_hh = lstm.weight_ih_l0, lstm.weight_hh_l0
    bias = lstm.bias_ih_l0 + lstm.bias_hh_l0
    n, t, _ = x.shape
    hid = w_hh.shape[1]
    h = x.new_zeros(n, hid)
    c = x.new_zeros(n, hid)
    gx = x @ w_ih.T + bias
    ys = []
    for s in range(t):
        gates = gx[:, s] + h @ w_hh.T
        ig, fg, gg, og = gates.chunk(4, dim=-1)
        c = obs(f"c{i}", torch.sigmoid(fg) * c + torch.sigmoid(ig) * torch.tanh(gg))
        h = obs(f"h{i}", torch.sigmoid(og) * torch.tanh(c))
        ys.append(h)
    return torch.stack(ys, dim=1) if ys else x.new_zeros(n, 0, hid)


def float_predictor(model, ctx: torch.Tensor, obs=lambda name, t: t) -> torch.Tensor:
    """(N, C) token contexts -> projected predictor output (N, J), op for op as lowered."""
    pred = model.predictor
    emb = pred._embed(ctx)  # (N, C, D)
    out = pred.conv(emb.transpose(1, 2))[..., -1] if pred.conv is not None else emb[:, -1]
    out = obs("pred_act", torch.relu(out))
    return obs("pred_proj", model.joiner.predictor_proj(out))


@torch.no_grad()
def calibrate(model, batches) -> dict[str, tuple[float, float]]:
    """Activation ranges over ``batches`` (dicts with "x", "x_lens", "y", "y_lens" as
    ``asr.data.dataset.collate`` makes them), one utterance at a time so padding never counts. The
    joiner's ranges come from every (frame, token position) pair of the teacher-forced transcript."""
    _check_lowerable(model)
    obs = Ranges()
    c = model.predictor.context_size
    for batch in batches:
        for i in range(batch["x"].size(0)):
            x = batch["x"][i : i + 1, : int(batch["x_lens"][i])]
            enc = float_encoder(model, x, obs)[0]  # (T', J)
            y = batch["y"][i, : int(batch["y_lens"][i])].tolist()
            history = [-1] * (c - 1) + [model.blank_id] + y
            ctx = torch.tensor([history[u : u + c] for u in range(len(y) + 1)])
            pred = float_predictor(model, ctx, obs)  # (U + 1, J)
            s = obs("join_sum", enc[:, None, :] + pred[None, :, :])
            obs("logits", model.joiner.output(torch.tanh(s)))
    missing = [k for k in ("x0", "enc_proj", "join_sum") if k not in obs.ranges]
    if missing:
        raise UserError("calibration saw no encoder frames: give utterances of at least 9 feature frames")
    return obs.ranges


# ---- lowering --------------------------------------------------------------------------------------


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
    from asr.compression.common import CODEBOOK_SUFFIX

    return getattr(module, name + CODEBOOK_SUFFIX, None)


def _silu(v):
    return v / (1 + np.exp(-v))


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _layer_norm_op(norm: torch.nn.LayerNorm, x: str, y: str, t: dict) -> Op:
    gamma, beta = _np(norm.weight), _np(norm.bias)
    s_g = max(float(np.abs(gamma).max()), 1e-12) / spec.INT8_WEIGHT.qmax
    acc_scale = 2.0**-reference.LN_FRAC_BITS * s_g
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
    _check_lowerable(model)
    if logits_bits not in (8, 16):
        raise UserError(f"logits_bits={logits_bits}: use 8 or 16")
    encoder = _lower_encoder(model, ranges)
    predictor = _lower_predictor(model, ranges)
    joiner = _lower_joiner(model, ranges, encoder.tensors["enc_proj"], predictor.tensors["pred_proj"], logits_bits)
    return encoder, predictor, joiner


# ---- decoding on the emulated NNA -------------------------------------------------------------------


class _PredictorInfo:
    def __init__(self, context_size: int) -> None:
        self.context_size = context_size

    def init_state(self, batch: int, device="cpu"):
        return None


class _EncoderInfo:
    subsampling_factor = 4


class NNATransducer:
    """The lowered programs behind the model interface of ``asr.decoding.search``. Encoder and
    predictor outputs travel as their int8 codes (held exactly in float tensors); ``join`` returns
    the dequantized logits."""

    def __init__(self, encoder: Program, predictor: Program, joiner: Program, context_size: int, blank_id: int,
                 num_layers: int, hidden_dim: int, backend: str = "numba", profile: str = "fixed_point",
                 chunk_frames: int = 32) -> None:
        self.programs = (encoder, predictor, joiner)
        self.predictor = _PredictorInfo(context_size)
        self.encoder = _EncoderInfo()
        self.blank_id = blank_id
        self.num_layers, self.hidden_dim = num_layers, hidden_dim
        self.backend, self.profile, self.chunk_frames = backend, profile, chunk_frames

    @classmethod
    def from_model(cls, model, ranges: dict, backend: str = "numba", profile: str = "fixed_point",
                   chunk_frames: int = 32, logits_bits: int = 8) -> "NNATransducer":
        enc = model.encoder
        return cls(*lower(model, ranges, logits_bits), model.predictor.context_size, model.blank_id,
                   len(enc.stack.layers), enc.stack.hidden_dim, backend, profile, chunk_frames)

    def weight_bytes(self) -> int:
        """int8 weights + int32 biases of the three programs."""
        return sum(p.weight_bytes() for p in self.programs)

    def table_bytes(self) -> int:
        """Distinct activation lookup tables (int8: 256 entries; int16 LSTM tables: 65535 x 2 bytes)."""
        tables = {}
        for p in self.programs:
            tables.update(p.tables())
        return sum(t.nbytes for t in tables.values())

    def init_state(self, batch: int) -> dict[str, np.ndarray]:
        enc = self.programs[0]
        state = {}
        for i in range(self.num_layers):
            state[f"h_in{i}"] = np.full((batch, self.hidden_dim), enc.tensors[f"h_in{i}"].zero_point, np.int8)
            state[f"c_in{i}"] = np.zeros((batch, self.hidden_dim), np.int16)
        return state

    def encode_chunk(self, feats: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
        """One chunk of float features (N, 4k + 5, F) -> int8 encoder codes (N, k, J), new state."""
        out = self.programs[0].run({"feats": feats, **state}, self.backend, self.profile)
        new_state = {}
        for i in range(self.num_layers):
            new_state[f"h_in{i}"], new_state[f"c_in{i}"] = out[f"h_out{i}"], out[f"c_out{i}"]
        return out["enc_proj"], new_state

    def encode(self, x: torch.Tensor, x_lens: torch.Tensor, chunk_frames: int | None = None):
        """Streaming: chunks of ``chunk_frames`` feature frames (+ 5 overlap) with the state carried
        over; 0 runs the whole input as one chunk (the same integers). -> codes (N, T', J), lengths."""
        from asr.modules.subsampling import Conv2dSubsampling, subsampled_lengths

        chunk = self.chunk_frames if chunk_frames is None else chunk_frames
        feats = x.detach().cpu().numpy().astype(np.float32)
        state = self.init_state(feats.shape[0])
        total = feats.shape[1]
        step = chunk if chunk > 0 else max(total - Conv2dSubsampling.overlap_frames, 1)
        outs, start = [], 0
        while start + Conv2dSubsampling.receptive_field <= total:
            codes, state = self.encode_chunk(feats[:, start : start + step + Conv2dSubsampling.overlap_frames], state)
            outs.append(codes)
            start += step
        codes = np.concatenate(outs, axis=1) if outs else np.zeros((feats.shape[0], 0, self._dim("enc_proj")), np.int8)
        return torch.from_numpy(codes.astype(np.float32)), subsampled_lengths(x_lens)

    def _dim(self, name: str) -> int:
        for op in self.programs[0].ops:
            if op.outputs[0] == name:
                return op.attrs["w"].shape[0]
        raise KeyError(name)

    def predict(self, y_ctx: torch.Tensor, state=None):
        out = self.programs[1].run({"ids": y_ctx.cpu().numpy().astype(np.int64)}, self.backend, self.profile)
        return torch.from_numpy(out["pred_proj"].astype(np.float32)), None

    def join(self, enc_codes: torch.Tensor, pred_codes: torch.Tensor) -> torch.Tensor:
        joiner = self.programs[2]
        fmt = joiner.tensors["enc_proj"].fmt
        out = joiner.run({"enc_proj": enc_codes.numpy().astype(fmt.dtype), "pred_proj": pred_codes.numpy().astype(fmt.dtype)},
                         self.backend, self.profile)
        return torch.from_numpy(joiner.tensors["logits"].dequantize(out["logits"]).astype(np.float32))


def emulate(checkpoint: str, data: str, out_dir: str, calib: str | None = None, num_calib: int = 100,
            profile: str = "fixed_point", backend: str = "numba", method: str = "greedy", beam: int = 4,
            chunk_frames: int = 32, logits_bits: int = 8, bpe_model: str | None = None) -> dict:
    """``asr emulate``: calibrate on ``calib`` (default: the checkpoint's dev cuts), lower, decode
    ``data`` with the float model and with the emulated NNA; returns the numbers of both."""
    import time
    from itertools import islice

    from asr.checkpoint import load_model
    from asr.compression.common import deployable_parameters
    from asr.data.dataset import collate, load_cuts
    from asr.decode import decode_model
    from asr.tokenizer import Tokenizer

    if profile not in spec.PROFILES:
        raise UserError(f"--profile {profile}: use one of {', '.join(spec.PROFILES)}")
    if num_calib < 1:
        raise UserError(f"--num-calib {num_calib}: must be at least 1")
    model, cfg, _ = load_model(checkpoint)
    _check_lowerable(model)
    tokenizer = Tokenizer(bpe_model or cfg.data.bpe_model)
    calib = calib or cfg.data.dev_cuts
    t0 = time.perf_counter()
    batches = [collate([c], tokenizer) for c in islice(load_cuts(calib), num_calib)]
    ranges = calibrate(model, batches)
    nna = NNATransducer.from_model(model, ranges, backend, profile, chunk_frames, logits_bits)
    lower_s = time.perf_counter() - t0
    tag = f"{method}"
    float_r = decode_model(model, tokenizer, data, out_dir, method, beam, tag=f"float-{tag}")
    nna_r = decode_model(nna, tokenizer, data, out_dir, method, beam, tag=f"nna-{profile}-{tag}")
    fp32_bytes = sum(p.numel() * 4 for _, p in deployable_parameters(model))
    return {"float_wer": float_r.wer, "nna_wer": nna_r.wer, "float_rtf": float_r.rtf, "nna_rtf": nna_r.rtf,
            "nna_bytes": nna.weight_bytes(), "nna_table_bytes": nna.table_bytes(), "fp32_bytes": fp32_bytes, "num_utts": nna_r.num_utts,
            "calib_utts": len(batches), "calib_lower_seconds": lower_s, "profile": profile, "method": method,
            "backend": backend}
