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

Encoders: the LSTM with sherpa-onnx's own lstm state (LSTMP written out as unrolled cells: the ONNX
LSTM op has no projection); the Conformer and the ConvRNN-T with their whole streaming state (caches,
running sums, frame counts) packed into ``state0``/``state1`` (:class:`StatePacker`), which
sherpa-onnx carries without looking inside (the reference's "packed states"; tests decode them with
sherpa-onnx). A Conformer is exported at its own attention chunk (``decode_chunk_len = 4 x
chunk_size``), where streaming equals its chunk-masked forward. int8 flavours: ``export/int8.py``.
Refused with a one-line error: the LSTM predictor (sherpa-onnx's icefall path needs a stateless
decoder) and the static int8 flavours of the ConvRNN-T (its LSTM op would stay float).
"""

from __future__ import annotations

import math
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


class StatePacker:
    """Any encoder's streaming state <-> the two tensors of sherpa-onnx's ``model_type=lstm``.

    sherpa-onnx treats the lstm states as opaque: it zero-fills ``state0 (R, N, W)`` and
    ``state1 (R, N, W)`` from the metadata and concatenates / splits them on axis 1 to batch streams
    (reference doc, section 3.5). So every per-stream value of a state tuple (the Conformer's
    attention and conv caches and frame count, the ConvRNN-T's conv caches, SE sums and LSTM state)
    is flattened, in tuple order, into one vector per stream, zero-padded to ``2 R W`` and split into
    the two tensors. Integer entries (frame counts) ride as float32, exact below 2**24 (186 hours of
    40 ms frames). The encoder's initial state must be all zeros (checked), as sherpa-onnx makes it.
    """

    def __init__(self, encoder, width: int) -> None:
        one, two = encoder.init_state(1), encoder.init_state(2)
        if any(bool(t.any()) for t in one):
            raise UserError(f"asr export: the {type(encoder).__name__} state does not start at zero, which "
                            "sherpa-onnx's model_type=lstm contract needs")
        # the stream axis of each state tensor: the one that differs between batch 1 and batch 2
        self.axes = [next(i for i, (a, b) in enumerate(zip(t1.shape, t2.shape)) if a != b) for t1, t2 in zip(one, two)]
        self.shapes = [tuple(d for i, d in enumerate(t.shape) if i != ax) for t, ax in zip(one, self.axes)]
        self.dtypes = [t.dtype for t in one]
        self.sizes = [math.prod(shape) for shape in self.shapes]
        self.width = width
        self.rows = -(-sum(self.sizes) // (2 * width))  # ceil

    def pack(self, state) -> tuple[torch.Tensor, torch.Tensor]:
        n = state[0].size(self.axes[0])
        flat = torch.cat([t.movedim(ax, 0).reshape(n, -1).to(torch.float32) for t, ax in zip(state, self.axes)], dim=1)
        flat = nn.functional.pad(flat, (0, 2 * self.rows * self.width - flat.size(1)))  # (N, 2 R W)
        both = flat.reshape(n, 2, self.rows, self.width)
        return both[:, 0].transpose(0, 1), both[:, 1].transpose(0, 1)  # (R, N, W) each

    def unpack(self, state0: torch.Tensor, state1: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = state0.size(1)
        flat = torch.stack([state0.transpose(0, 1), state1.transpose(0, 1)], dim=1).reshape(n, -1)  # (N, 2 R W)
        out, start = [], 0
        for shape, ax, size, dtype in zip(self.shapes, self.axes, self.sizes, self.dtypes):
            t = flat[:, start : start + size].reshape(n, *shape).movedim(0, ax)
            out.append(t if dtype == torch.float32 else t.round().to(dtype))
            start += size
        return tuple(out)

    def zeros(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.zeros(self.rows, batch, self.width)
        return z, z.clone()


class EncoderGraph(nn.Module):
    """One streaming chunk: (x, state0, state1) -> (projected encoder_out, new state0, new state1).

    The LSTM encoder's state is sherpa-onnx's own lstm layout, ``h (L, N, P)``, ``c (L, N, H)``;
    ``unrolled``: its cells as MatMul/Sigmoid/Tanh/Mul/Add (:class:`UnrolledLSTMStack`) instead of
    ONNX ``LSTM``. Other encoders' states travel packed (:class:`StatePacker`)."""

    def __init__(self, model, unrolled: bool = False) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.proj = model.joiner.encoder_proj
        self.unrolled = UnrolledLSTMStack(model.encoder.stack) if unrolled else None
        self.packer = None if is_lstm(model) else StatePacker(model.encoder, model.encoder.output_dim)

    def init_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder.init_state(batch) if self.packer is None else self.packer.zeros(batch)

    def state_dims(self) -> tuple[int, int, int]:
        """sherpa-onnx's num_encoder_layers, d_model, rnn_hidden_size."""
        if self.packer is not None:
            return self.packer.rows, self.packer.width, self.packer.width
        stack = self.encoder.stack
        return len(stack.layers), stack.output_dim, stack.hidden_dim

    def forward(self, x: torch.Tensor, state0: torch.Tensor, state1: torch.Tensor):
        x_lens = torch.full((x.size(0),), x.size(1), dtype=torch.int64)
        if self.unrolled is not None:
            x, _ = self.encoder.subsampling(self.encoder.normalize(x), x_lens)
            out, (h, c) = self.unrolled(x, (state0, state1))
            return self.proj(out), h, c
        state = (state0, state1) if self.packer is None else self.packer.unpack(state0, state1)
        out, _, state = self.encoder.streaming_forward(x, x_lens, state)
        state0, state1 = state if self.packer is None else self.packer.pack(state)
        return self.proj(out), state0, state1


def is_lstm(model) -> bool:
    from asr.models.lstm import LSTMEncoder

    return isinstance(model.encoder, LSTMEncoder)


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


def check_exportable(model, int8: tuple[str, ...] = ()) -> None:
    from asr.models.convrnnt import ConvRNNTEncoder
    from asr.models.predictor import StatelessPredictor

    if not isinstance(model.predictor, StatelessPredictor):
        raise UserError("asr export: sherpa-onnx needs a stateless predictor (model.predictor.type: stateless); "
                        "this checkpoint has an LSTM predictor")
    static = [f for f in int8 if f in ("static", "accelerator")]
    if static and isinstance(model.encoder, ConvRNNTEncoder):
        raise UserError(f"asr export --int8 {' '.join(static)}: the ConvRNN-T's LSTM layers would stay float "
                        "(QDQ does not quantize the LSTM op, and only the LSTM encoder is unrolled); use --int8 dynamic")


def _export(module: nn.Module, args: tuple, path: Path, input_names, output_names, dynamic_axes) -> None:
    # eval first: torch.onnx.export restores the wrapper's own mode afterwards, recursively, and a
    # freshly made wrapper is in training mode, which would leave the model's dropout switched on
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
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


def cpu_session(path: Path):
    """A one-thread onnxruntime CPU session (parity checks, calibration, SNR), warnings silenced."""
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
    sess = cpu_session(out / "encoder.onnx")
    # features around the model's own normalisation statistics, so every layer sees realistic ranges
    std = 1.0 / enc.normalize.inv_std
    for n in batches:
        x = enc.normalize.mean + std * torch.randn(n, chunk_frames * num_chunks + enc.overlap_frames, F, generator=g)
        h, c = graph.init_state(n)
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
    dec, join = cpu_session(out / "decoder.onnx"), cpu_session(out / "joiner.onnx")
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
    graph = EncoderGraph(model, unrolled)
    layers, P, H = graph.state_dims()
    J, ctx, vocab = model.joiner.output.in_features, model.predictor.context_size, model.joiner.output.out_features
    T = chunk_frames + enc.overlap_frames
    n = fixed_batch or 2  # batch-2 examples: a batch of 1 can get specialised (reference doc, section 6)

    def axes(d: dict) -> dict | None:
        return None if fixed_batch else {k: {v: "N"} for k, v in d.items()}

    h, c = graph.init_state(n)
    _export(graph, (torch.zeros(n, T, enc.normalize.mean.numel()), h, c), out / "encoder.onnx",
            ["x", "state0", "state1"], ["encoder_out", "new_state0", "new_state1"],
            axes({k: BATCH_AXES[k] for k in ("x", "state0", "state1", "encoder_out", "new_state0", "new_state1")}))
    # our own keys beside sherpa-onnx's (it ignores them): which encoder, and how its state is laid out
    add_metadata(out / "encoder.onnx", {
        "model_type": "lstm", "version": 1, "model_author": "ondevice-asr", "decode_chunk_len": chunk_frames,
        "T": T, "num_encoder_layers": layers, "d_model": P, "rnn_hidden_size": H,
        "encoder": type(enc).__name__, "state_layout": "lstm" if graph.packer is None else "packed"})
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


def export_onnx(checkpoint: str, out_dir: str, chunk_frames: int | None = None, bpe_model: str | None = None,
                int8: tuple[str, ...] = (), calib: str | None = None, num_calib: int = 50) -> dict:
    """Write encoder/decoder/joiner ONNX files, tokens.txt, bpe.model and bpe.vocab to ``out_dir`` (after the
    parity checks pass; files are built in a temporary folder and moved in one by one), and one
    complete model folder ``out_dir/int8-<flavour>`` per int8 flavour in ``int8`` (see
    ``export/int8.py``; ``calib``: the cut manifest static flavours calibrate on, default the
    checkpoint's dev cuts)."""
    from asr.checkpoint import load_model
    from asr.tokenizer import Tokenizer, write_bpe_vocab, write_tokens
    from export import int8 as q

    int8 = tuple(dict.fromkeys(int8))  # each flavour once
    unknown = [f for f in int8 if f not in q.FLAVOURS]
    if unknown:
        raise UserError(f"--int8 {' '.join(unknown)}: unknown flavour; use {', '.join(q.FLAVOURS)}")
    model, cfg, _ = load_model(checkpoint)
    check_exportable(model, int8)
    factor = model.encoder.subsampling_factor
    if getattr(model.encoder.cfg, "chunk_size", None) == 0:
        raise UserError(f"{checkpoint}: model.encoder.chunk_size=0, a full-context Conformer, cannot stream; "
                        "export a checkpoint trained with a chunk size (model.encoder.chunk_size > 0)")
    natural = getattr(model.encoder.cfg, "chunk_size", 0) * factor  # the Conformer's decoding chunk, in frames
    if chunk_frames is None:
        chunk_frames = natural or 32
    if chunk_frames < factor or chunk_frames % factor:
        raise UserError(f"--chunk-frames {chunk_frames}: must be a positive multiple of {factor} (the encoder's subsampling)")
    if natural and chunk_frames != natural:
        raise UserError(f"--chunk-frames {chunk_frames}: this Conformer attends in chunks of "
                        f"{model.encoder.cfg.chunk_size} encoder frames ({natural} feature frames); export with "
                        f"--chunk-frames {natural} (or leave it out)")
    tokenizer = Tokenizer(bpe_model or cfg.data.bpe_model)
    vocab = model.joiner.output.out_features
    if tokenizer.vocab_size != vocab:
        raise UserError(f"{tokenizer.path}: {tokenizer.vocab_size} tokens, but {checkpoint} emits {vocab}; "
                        "pass the --bpe-model it was trained with")
    # static flavours calibrate on these; every flavour's SNR is measured on the held-out part (a
    # dynamic-only export without a manifest here skips the SNR rather than fail)
    calib_path = calib or cfg.data.dev_cuts
    need = bool(set(int8) & set(q.STATIC)) or (int8 and (calib is not None or Path(calib_path).is_file()))
    calib_x = q.calibration_features(calib_path, num_calib) if need else []
    model = model.float().eval()

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".export.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        # the ONNX LSTM op has no projection: LSTMP layers are written out cell by cell
        errs = write_graphs(model, tmp, chunk_frames, unrolled=is_lstm(model) and bool(model.encoder.cfg.proj_dim))
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
        for flavour in set(q.FLAVOURS) - set(int8):  # an earlier export's flavours would now be stale
            shutil.rmtree(out / f"int8-{flavour}", ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"out": str(out), "files": {f: (out / f).stat().st_size for f in files}, "max_abs_diff": errs,
            "decode_chunk_len": chunk_frames, "T": chunk_frames + model.encoder.overlap_frames, "int8": int8_info}
