"""ONNX export of a trained transducer in sherpa-onnx's streaming layout (``asr export``), fp32.

Three graphs, the contract of sherpa-onnx's icefall path (``../shared/reference/sherpa-onnx-and-int8.md``):

* ``encoder.onnx``: ``x (N, T, F)``, ``state0 = h (L, N, P)``, ``state1 = c (L, N, H)`` ->
  ``encoder_out (N, T', J)`` (already through the joiner's encoder projection), ``new_state0``,
  ``new_state1``. ``T = decode_chunk_len + 5``: each call sees the 5 overlap frames of the previous
  chunk, so chunk-by-chunk output equals the full forward. Metadata ``model_type=lstm``,
  ``decode_chunk_len``, ``T``, ``num_encoder_layers``, ``d_model``, ``rnn_hidden_size``.
* ``decoder.onnx``: ``y (N, context_size)`` int64 (negative ids = no token yet) ->
  ``decoder_out (N, J)`` (through the predictor projection). Metadata ``vocab_size``, ``context_size``.
* ``joiner.onnx``: ``encoder_out (N, J)``, ``decoder_out (N, J)`` -> raw ``logit (N, V)``.

Plus ``tokens.txt`` (``<blk> 0`` ...), ``bpe.model`` and ``bpe.vocab`` (what sherpa-onnx's
``bpe_vocab=`` reads to spell hotwords). Every batch axis is dynamic (asserted after
export), and :func:`export_onnx` checks each graph against PyTorch with onnxruntime before it
writes anything to ``out_dir``: each component on random inputs at batch 1 and 3, and the encoder
chunk by chunk with its state carried (atol 1e-4).

Exported today: the LSTM encoder (with projections, LSTMP, as an unrolled cell: the ONNX LSTM op
has none) with the stateless predictor; int8 flavours in ``export/int8.py``. Not yet (refused with
a one-line error): the LSTM predictor (sherpa-onnx's icefall path needs a stateless decoder), the
Conformer and the ConvRNN-T.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from asr.errors import UserError

OPSET = 17
PARITY_ATOL = 1e-4


class UnrolledLSTMStack(nn.Module):
    """The encoder's LSTM stack with every cell written out as MatMul + Sigmoid/Tanh/Mul/Add, one
    step per encoder frame of the (fixed-length) chunk; same weights, same numbers.

    ONNX's ``LSTM`` op keeps its weights float under static (QDQ) quantization and most NNAs do not
    run it at all; unrolled, every weight is a MatMul initializer that quantizes per channel (the
    accelerator flavour of ``asr export --int8``). It also expresses projections (LSTMP), which the
    ``LSTM`` op cannot. Gate order is PyTorch's: input, forget, cell, output.
    """

    def __init__(self, stack) -> None:
        super().__init__()
        self.stack = stack

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """x (N, T', D), state (h (L, N, P), c (L, N, H)) -> (N, T', P), new state."""
        st = self.stack
        x = st.input_norm(x)
        h_out, c_out = [], []
        for i, lstm in enumerate(st.layers):
            h, c = state[0][i], state[1][i]  # (N, P), (N, H)
            gx = x @ lstm.weight_ih_l0.T + (lstm.bias_ih_l0 + lstm.bias_hh_l0)  # (N, T', 4H), all frames at once
            ys = []
            for t in range(x.size(1)):
                gates = gx[:, t] + h @ lstm.weight_hh_l0.T  # (N, 4H)
                ig, fg, gg, og = gates.chunk(4, dim=-1)
                c = torch.sigmoid(fg) * c + torch.sigmoid(ig) * torch.tanh(gg)
                h = torch.sigmoid(og) * torch.tanh(c)
                if lstm.proj_size:
                    h = h @ lstm.weight_hr_l0.T  # (N, H) -> (N, P)
                ys.append(h)
            y = torch.stack(ys, dim=1)  # (N, T', P)
            x = y + x if y.shape == x.shape else y  # residual where dims match (as LSTMStack)
            h_out.append(h)
            c_out.append(c)
        return st.output_norm(x), (torch.stack(h_out), torch.stack(c_out))


class EncoderGraph(nn.Module):
    """One streaming chunk: (x, h, c) -> (projected encoder_out, new h, new c). ``unrolled``: the
    LSTM cells as MatMul/Sigmoid/Tanh/Mul/Add (:class:`UnrolledLSTMStack`) instead of ONNX ``LSTM``."""

    def __init__(self, model, unrolled: bool = False) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.proj = model.joiner.encoder_proj
        self.unrolled = UnrolledLSTMStack(model.encoder.stack) if unrolled else None

    def forward(self, x: torch.Tensor, state0: torch.Tensor, state1: torch.Tensor):
        if self.unrolled is None:
            x_lens = torch.full((x.size(0),), x.size(1), dtype=torch.int64)
            out, _, (h, c) = self.encoder.streaming_forward(x, x_lens, (state0, state1))
        else:
            x, _ = self.encoder.subsampling(self.encoder.normalize(x), torch.full((x.size(0),), x.size(1)))
            out, (h, c) = self.unrolled(x, (state0, state1))
        return self.proj(out), h, c


class DecoderGraph(nn.Module):
    """(N, C) last tokens -> (N, J) projected predictor output."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.model.predict(y)[0]


class JoinerGraph(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.joiner = model.joiner

    def forward(self, encoder_out: torch.Tensor, decoder_out: torch.Tensor) -> torch.Tensor:
        return self.joiner(encoder_out, decoder_out)


def check_exportable(model) -> None:
    from asr.models.lstm import LSTMEncoder
    from asr.models.predictor import StatelessPredictor

    enc = model.encoder
    if not isinstance(enc, LSTMEncoder):
        raise UserError(f"asr export: the {type(enc).__name__} encoder is not exported yet (the LSTM encoder is); "
                        "see export/onnx.py")
    if not isinstance(model.predictor, StatelessPredictor):
        raise UserError("asr export: sherpa-onnx needs a stateless predictor (model.predictor.type: stateless); "
                        "this checkpoint has an LSTM predictor")


def _export(module: nn.Module, args: tuple, path: Path, input_names, output_names, dynamic_axes) -> None:
    with warnings.catch_warnings():
        # torch 2.9+ warns that the TorchScript exporter is deprecated; it is the one that exports
        # a truly dynamic batch from these modules without onnxscript (reference doc, section 6)
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False)


def add_metadata(path: Path, meta: dict) -> None:
    import onnx

    m = onnx.load(str(path))
    del m.metadata_props[:]
    for k, v in meta.items():
        m.metadata_props.add(key=k, value=str(v))
    onnx.save(m, str(path))


def read_metadata(path: Path) -> dict:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def batch_axes_are_dynamic(path: Path, batch_axes: dict[str, int]) -> list[str]:
    """Names of inputs/outputs whose batch axis is a fixed number instead of a symbol."""
    import onnx

    graph = onnx.load(str(path)).graph
    fixed = []
    for v in list(graph.input) + list(graph.output):
        axis = batch_axes.get(v.name)
        if axis is not None and not v.type.tensor_type.shape.dim[axis].dim_param:
            fixed.append(v.name)
    return fixed


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _close(name: str, got: np.ndarray, want: torch.Tensor, what: str) -> float:
    want = want.detach().numpy()
    if got.shape != want.shape:
        raise RuntimeError(f"{name}: onnxruntime output {what} has shape {got.shape}, PyTorch {want.shape}")
    err = float(np.abs(got - want).max()) if got.size else 0.0
    if err > PARITY_ATOL:
        raise RuntimeError(f"{name}: onnxruntime differs from PyTorch by {err:.3g} (> {PARITY_ATOL}) in {what}")
    return err


@torch.no_grad()
def check_parity(model, out: Path, chunk_frames: int, batches: tuple[int, ...] = (1, 3), num_chunks: int = 4,
                 seed: int = 0) -> dict:
    """Max |onnxruntime - PyTorch| per graph of the folder ``out`` (raises if any exceeds
    ``PARITY_ATOL``), at each batch size in ``batches``."""
    g = torch.Generator().manual_seed(seed)
    enc, F = model.encoder, model.encoder.normalize.mean.numel()
    T = chunk_frames + enc.overlap_frames
    graph = EncoderGraph(model)
    errs = {"encoder": 0.0, "encoder_streaming": 0.0, "decoder": 0.0, "joiner": 0.0}
    sess = _session(out / "encoder.onnx")
    # features around the model's own normalisation statistics, so every layer sees realistic ranges
    std = 1.0 / enc.normalize.inv_std
    for n in batches:
        x = enc.normalize.mean + std * torch.randn(n, chunk_frames * num_chunks + enc.overlap_frames, F, generator=g)
        h, c = enc.init_state(n)
        h_ort, c_ort = h.numpy(), c.numpy()
        full = model.encode(x, torch.full((n,), x.size(1)))[0]
        for i in range(num_chunks):
            chunk = x[:, i * chunk_frames : i * chunk_frames + T]
            y, h, c = graph(chunk, h, c)  # PyTorch, state carried
            y_ort, h_ort, c_ort = sess.run(None, {"x": chunk.numpy(), "state0": h_ort, "state1": c_ort})
            errs["encoder"] = max(errs["encoder"], _close("encoder.onnx", y_ort, y, f"encoder_out, chunk {i}, N={n}"),
                                  _close("encoder.onnx", h_ort, h, "new_state0"), _close("encoder.onnx", c_ort, c, "new_state1"))
            k = chunk_frames // enc.subsampling_factor
            errs["encoder_streaming"] = max(errs["encoder_streaming"], _close(
                "encoder.onnx", y_ort, full[:, i * k : (i + 1) * k], f"chunk {i} vs the full-utterance forward, N={n}"))
    dec, join = _session(out / "decoder.onnx"), _session(out / "joiner.onnx")
    ctx = model.predictor.context_size
    for n in batches:
        y = torch.randint(-1, model.joiner.output.out_features, (n, ctx), generator=g)
        want = model.predict(y)[0]
        errs["decoder"] = max(errs["decoder"], _close("decoder.onnx", dec.run(None, {"y": y.numpy()})[0], want, f"decoder_out, N={n}"))
        e = torch.randn(n, want.size(1), generator=g)
        got = join.run(None, {"encoder_out": e.numpy(), "decoder_out": want.numpy()})[0]
        errs["joiner"] = max(errs["joiner"], _close("joiner.onnx", got, model.join(e, want), f"logit, N={n}"))
    return errs


BATCH_AXES = {"x": 0, "state0": 1, "state1": 1, "encoder_out": 0, "new_state0": 1, "new_state1": 1,
              "y": 0, "decoder_out": 0, "logit": 0}


def write_graphs(model, out: Path, chunk_frames: int, unrolled: bool = False, fixed_batch: int | None = None) -> dict:
    """encoder/decoder/joiner.onnx of ``model`` (float32, eval) in ``out``, with sherpa-onnx metadata,
    checked against PyTorch; returns the parity errors. ``fixed_batch``: every shape fixed, batch
    included (what static-shape accelerators need), instead of a dynamic batch (asserted)."""
    enc = model.encoder
    layers, P, H = len(enc.stack.layers), enc.stack.output_dim, enc.stack.hidden_dim
    J, ctx, vocab = model.joiner.output.in_features, model.predictor.context_size, model.joiner.output.out_features
    T = chunk_frames + enc.overlap_frames
    n = fixed_batch or 2  # batch-2 examples: a batch of 1 can get specialised (reference doc, section 6)

    def axes(d: dict) -> dict | None:
        return None if fixed_batch else {k: {v: "N"} for k, v in d.items()}

    h, c = enc.init_state(n)
    _export(EncoderGraph(model, unrolled), (torch.zeros(n, T, enc.normalize.mean.numel()), h, c), out / "encoder.onnx",
            ["x", "state0", "state1"], ["encoder_out", "new_state0", "new_state1"],
            axes({k: BATCH_AXES[k] for k in ("x", "state0", "state1", "encoder_out", "new_state0", "new_state1")}))
    add_metadata(out / "encoder.onnx", {
        "model_type": "lstm", "version": 1, "model_author": "ondevice-asr", "decode_chunk_len": chunk_frames,
        "T": T, "num_encoder_layers": layers, "d_model": P, "rnn_hidden_size": H})
    _export(DecoderGraph(model), (torch.zeros(n, ctx, dtype=torch.int64),), out / "decoder.onnx", ["y"],
            ["decoder_out"], axes({"y": 0, "decoder_out": 0}))
    add_metadata(out / "decoder.onnx", {"vocab_size": vocab, "context_size": ctx})
    _export(JoinerGraph(model), (torch.zeros(n, J), torch.zeros(n, J)), out / "joiner.onnx",
            ["encoder_out", "decoder_out"], ["logit"], axes({"encoder_out": 0, "decoder_out": 0, "logit": 0}))
    add_metadata(out / "joiner.onnx", {"joiner_dim": J})
    if not fixed_batch:
        for name in GRAPHS:
            fixed = batch_axes_are_dynamic(out / name, BATCH_AXES)
            if fixed:
                raise RuntimeError(f"{name}: batch axis of {', '.join(fixed)} was exported as a fixed size")
    return check_parity(model, out, chunk_frames, batches=(fixed_batch,) if fixed_batch else (1, 3))


GRAPHS = ("encoder.onnx", "decoder.onnx", "joiner.onnx")
SIDE_FILES = ("tokens.txt", "bpe.model", "bpe.vocab")


def export_onnx(checkpoint: str, out_dir: str, chunk_frames: int = 32, bpe_model: str | None = None,
                int8: tuple[str, ...] = (), calib: str | None = None, num_calib: int = 50) -> dict:
    """Write encoder/decoder/joiner ONNX files, tokens.txt and bpe.model to ``out_dir`` (after the
    parity checks pass; files are built in a temporary folder and moved in one by one), and one
    complete model folder ``out_dir/int8-<flavour>`` per int8 flavour in ``int8`` (see
    ``export/int8.py``; ``calib``: the cut manifest static flavours calibrate on, default the
    checkpoint's dev cuts)."""
    from asr.checkpoint import load_model
    from asr.tokenizer import Tokenizer, write_bpe_vocab, write_tokens
    from export import int8 as q

    unknown = [f for f in int8 if f not in q.FLAVOURS]
    if unknown:
        raise UserError(f"--int8 {' '.join(unknown)}: unknown flavour; use {', '.join(q.FLAVOURS)}")
    model, cfg, _ = load_model(checkpoint)
    check_exportable(model)
    factor = model.encoder.subsampling_factor
    if chunk_frames < factor or chunk_frames % factor:
        raise UserError(f"--chunk-frames {chunk_frames}: must be a positive multiple of {factor} (the encoder's subsampling)")
    tokenizer = Tokenizer(bpe_model or cfg.data.bpe_model)
    vocab = model.joiner.output.out_features
    if tokenizer.vocab_size != vocab:
        raise UserError(f"{tokenizer.path}: {tokenizer.vocab_size} tokens, but {checkpoint} emits {vocab}; "
                        "pass the --bpe-model it was trained with")
    calib_x = q.calibration_features(calib or cfg.data.dev_cuts, num_calib) if int8 else []
    model = model.float().eval()

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".export.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        # the ONNX LSTM op has no projection: LSTMP layers are written out cell by cell
        errs = write_graphs(model, tmp, chunk_frames, unrolled=bool(model.encoder.cfg.proj_dim))
        shutil.copyfile(tokenizer.path, tmp / "bpe.model")
        write_tokens(tmp / "bpe.model", tmp / "tokens.txt")
        write_bpe_vocab(tmp / "bpe.model", tmp / "bpe.vocab")  # sherpa-onnx's bpe_vocab= (hotwords)
        files = [*GRAPHS, *SIDE_FILES]
        int8_info = {}
        for flavour in int8:
            int8_info[flavour] = q.make_flavour(model, tmp, tmp / f"int8-{flavour}", flavour, chunk_frames, calib_x)
            files += [f"int8-{flavour}/{f}" for f in (*GRAPHS, *SIDE_FILES)]
        for name in files:
            (out / name).parent.mkdir(exist_ok=True)
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"out": str(out), "files": {f: (out / f).stat().st_size for f in files}, "max_abs_diff": errs,
            "decode_chunk_len": chunk_frames, "T": chunk_frames + model.encoder.overlap_frames, "int8": int8_info}
