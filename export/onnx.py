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

Plus ``tokens.txt`` (``<blk> 0`` ...) and ``bpe.model``. Every batch axis is dynamic (asserted after
export), and :func:`export_onnx` checks each graph against PyTorch with onnxruntime before it
writes anything to ``out_dir``: each component on random inputs at batch 1 and 3, and the encoder
chunk by chunk with its state carried (atol 1e-4).

Exported today: the LSTM encoder without projections (``proj_dim: 0``) with the stateless
predictor. Not yet (refused with a one-line error): LSTMP (the ONNX LSTM op has no projection; it
needs an unrolled cell), the LSTM predictor (sherpa-onnx's icefall path needs a stateless decoder),
the Conformer and the ConvRNN-T.
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


class EncoderGraph(nn.Module):
    """One streaming chunk: (x, h, c) -> (projected encoder_out, new h, new c)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.proj = model.joiner.encoder_proj

    def forward(self, x: torch.Tensor, state0: torch.Tensor, state1: torch.Tensor):
        x_lens = torch.full((x.size(0),), x.size(1), dtype=torch.int64)
        out, _, (h, c) = self.encoder.streaming_forward(x, x_lens, (state0, state1))
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
    if enc.cfg.proj_dim:
        raise UserError(f"asr export: LSTM projections (model.encoder.proj_dim={enc.cfg.proj_dim}) are not exported yet; "
                        "train with proj_dim: 0")
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
def check_parity(model, out: Path, chunk_frames: int, num_chunks: int = 4, seed: int = 0) -> dict:
    """Max |onnxruntime - PyTorch| per graph (raises if any exceeds ``PARITY_ATOL``)."""
    g = torch.Generator().manual_seed(seed)
    enc, F = model.encoder, model.encoder.normalize.mean.numel()
    T = chunk_frames + enc.overlap_frames
    graph = EncoderGraph(model)
    errs = {"encoder": 0.0, "encoder_streaming": 0.0, "decoder": 0.0, "joiner": 0.0}
    sess = _session(out / "encoder.onnx")
    # features around the model's own normalisation statistics, so every layer sees realistic ranges
    std = 1.0 / enc.normalize.inv_std
    for n in (1, 3):
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
    for n in (1, 3):
        y = torch.randint(-1, model.joiner.output.out_features, (n, ctx), generator=g)
        want = model.predict(y)[0]
        errs["decoder"] = max(errs["decoder"], _close("decoder.onnx", dec.run(None, {"y": y.numpy()})[0], want, f"decoder_out, N={n}"))
        e = torch.randn(n, want.size(1), generator=g)
        got = join.run(None, {"encoder_out": e.numpy(), "decoder_out": want.numpy()})[0]
        errs["joiner"] = max(errs["joiner"], _close("joiner.onnx", got, model.join(e, want), f"logit, N={n}"))
    return errs


def export_onnx(checkpoint: str, out_dir: str, chunk_frames: int = 32, bpe_model: str | None = None) -> dict:
    """Write encoder/decoder/joiner ONNX files, tokens.txt and bpe.model to ``out_dir`` (after the
    parity checks pass; files are built in a temporary folder and moved in one by one)."""
    from asr.checkpoint import load_model
    from asr.tokenizer import Tokenizer, write_tokens

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
    model = model.float().eval()
    enc = model.encoder
    layers, P, H = len(enc.stack.layers), enc.stack.output_dim, enc.stack.hidden_dim
    J, ctx = model.joiner.output.in_features, model.predictor.context_size
    T = chunk_frames + enc.overlap_frames

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".export.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        h, c = enc.init_state(2)
        x = torch.zeros(2, T, enc.normalize.mean.numel())
        _export(EncoderGraph(model), (x, h, c), tmp / "encoder.onnx", ["x", "state0", "state1"],
                ["encoder_out", "new_state0", "new_state1"],
                {"x": {0: "N"}, "state0": {1: "N"}, "state1": {1: "N"}, "encoder_out": {0: "N"},
                 "new_state0": {1: "N"}, "new_state1": {1: "N"}})
        add_metadata(tmp / "encoder.onnx", {
            "model_type": "lstm", "version": 1, "model_author": "ondevice-asr", "decode_chunk_len": chunk_frames,
            "T": T, "num_encoder_layers": layers, "d_model": P, "rnn_hidden_size": H})
        _export(DecoderGraph(model), (torch.zeros(2, ctx, dtype=torch.int64),), tmp / "decoder.onnx", ["y"],
                ["decoder_out"], {"y": {0: "N"}, "decoder_out": {0: "N"}})
        add_metadata(tmp / "decoder.onnx", {"vocab_size": vocab, "context_size": ctx})
        _export(JoinerGraph(model), (torch.zeros(2, J), torch.zeros(2, J)), tmp / "joiner.onnx",
                ["encoder_out", "decoder_out"], ["logit"],
                {"encoder_out": {0: "N"}, "decoder_out": {0: "N"}, "logit": {0: "N"}})
        add_metadata(tmp / "joiner.onnx", {"joiner_dim": J})
        batch_axes = {"x": 0, "state0": 1, "state1": 1, "encoder_out": 0, "new_state0": 1, "new_state1": 1,
                      "y": 0, "decoder_out": 0, "logit": 0}
        for name in ("encoder.onnx", "decoder.onnx", "joiner.onnx"):
            fixed = batch_axes_are_dynamic(tmp / name, batch_axes)
            if fixed:
                raise RuntimeError(f"{name}: batch axis of {', '.join(fixed)} was exported as a fixed size")
        errs = check_parity(model, tmp, chunk_frames)
        shutil.copyfile(tokenizer.path, tmp / "bpe.model")
        write_tokens(tmp / "bpe.model", tmp / "tokens.txt")
        files = ["encoder.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt", "bpe.model"]
        for name in files:
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"out": str(out), "files": {f: (out / f).stat().st_size for f in files}, "max_abs_diff": errs,
            "decode_chunk_len": chunk_frames, "T": T}
