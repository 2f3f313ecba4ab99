"""The fp32 ONNX graphs of a trained transducer in sherpa-onnx's streaming layout, with their
metadata and the onnxruntime-vs-PyTorch checks (``asr export`` writes a whole folder with
``export.folder``).

Three graphs, the contract of sherpa-onnx's icefall path (its ``online-lstm-transducer-model.cc``):

* ``encoder.onnx``: ``x (N, T, F)``, ``state0 = h (L, N, P)``, ``state1 = c (L, N, H)`` ->
  ``encoder_out (N, T', J)`` (already through the joiner's encoder projection), ``new_state0``,
  ``new_state1``. ``T = decode_chunk_len + 5``: each call sees the 5 overlap frames of the previous
  chunk, so chunk-by-chunk output equals the full forward. Metadata ``model_type=lstm``,
  ``decode_chunk_len``, ``T``, ``num_encoder_layers``, ``d_model``, ``rnn_hidden_size``.
* ``decoder.onnx``: ``y (N, context_size)`` int64 (negative ids = no token yet) ->
  ``decoder_out (N, J)`` (through the predictor projection). Metadata ``vocab_size``, ``context_size``.
* ``joiner.onnx``: ``encoder_out (N, J)``, ``decoder_out (N, J)`` -> raw ``logit (N, V)``.

Every batch axis is dynamic (asserted after export), and :func:`write_graphs` checks each graph
against PyTorch with onnxruntime (:func:`check_parity`): each component on random inputs at batch 1
and 3, and the encoder chunk by chunk with its state carried (atol 1e-4).

Encoders: the LSTM with sherpa-onnx's own lstm state (LSTMP written out as unrolled cells: the ONNX
LSTM op has no projection); the Conformer and the ConvRNN-T with their whole streaming state (caches,
running sums, frame counts) packed into ``state0``/``state1`` (``asr.streaming.pytorch.StatePacker``),
which sherpa-onnx carries without looking inside (tests decode them with sherpa-onnx). The encoder
graph is ``asr.streaming.pytorch.EncoderStep``, the module the PyTorch streaming engine runs eagerly.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from asr.chunking import Chunking
from asr.models.biasing import ALPHABET, phrase_chars
from asr.models.transducer import BiasedModel
from asr.streaming.pytorch import EncoderStep

OPSET = 17
PARITY_ATOL = 1e-4
GRAPHS = ("encoder.onnx", "decoder.onnx", "joiner.onnx")
BIAS_GRAPH = "bias_encoder.onnx"  # a biasing model's phrase encoder (see BiasEncoderGraph)
PARITY_PHRASES = ["ANNA SMITH", "BOB", "O'NEIL QUARTERMAINE"]  # the list the parity check biases with
SIDE_FILES = ("tokens.txt", "bpe.model", "bpe.vocab")  # beside the graphs in a model folder


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


class DecoderGraph(nn.Module):
    """(N, C) last tokens -> (N, J) projected predictor output; a biasing model with a predictor adapter
    also takes its list's keys and values (P, A)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        biasing = getattr(model, "biasing", None)
        self.adapter = None if biasing is None else biasing.predictor_adapter

    def forward(self, y: torch.Tensor, bias_keys: torch.Tensor | None = None, bias_values: torch.Tensor | None = None):
        if bias_keys is None:
            return self.model.predict(y)[0]
        out = self.model.predictor.step(y, None)[0]  # (N, D)
        out = self.adapter.attend_phrases(out.unsqueeze(1), bias_keys, bias_values).squeeze(1)
        return self.model.joiner.predictor_proj(out)


class BiasEncoderGraph(nn.Module):
    """``bias_encoder.onnx``: one phrase's characters (1, L) -> the keys and values (1, A) each adapter
    attends to, ``encoder_keys``, ``encoder_values`` (and ``decoder_keys``, ``decoder_values`` with a
    predictor adapter). Run once per phrase of a list (``asr.models.biasing.phrase_chars`` spells it),
    never per chunk."""

    def __init__(self, model) -> None:
        super().__init__()
        self.biasing = model.biasing

    def forward(self, chars: torch.Tensor):
        e = self.biasing.embed_unpadded(chars)  # (1, B): acoustic (+ semantic)
        adapters = [self.biasing.encoder_adapter] + ([self.biasing.predictor_adapter]
                                                      if self.biasing.predictor_adapter is not None else [])
        return tuple(t for a in adapters for t in (a.key(e), a.value(e)))


class JoinerGraph(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.joiner = model.joiner

    def forward(self, encoder_out: torch.Tensor, decoder_out: torch.Tensor) -> torch.Tensor:
        return self.joiner(encoder_out, decoder_out)


def encoder_step(model, unrolled: bool = False) -> EncoderStep:
    """The encoder graph's module; ``unrolled``: the LSTM stack as unrolled cells (:class:`UnrolledLSTMStack`)."""
    return EncoderStep(model, UnrolledLSTMStack(model.encoder.stack) if unrolled else None)


def _export(module: nn.Module, args: tuple, path: Path, input_names, output_names, dynamic_axes) -> None:
    # eval first: torch.onnx.export restores the wrapper's own mode afterwards, recursively, and a
    # freshly made wrapper is in training mode, which would leave the model's dropout switched on
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        # torch 2.9+ warns that the TorchScript exporter is deprecated; it is the one that exports
        # a truly dynamic batch from these modules without onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False)


def add_metadata(path: Path, meta: dict) -> None:
    m = onnx.load(str(path))
    del m.metadata_props[:]
    for k, v in meta.items():
        m.metadata_props.add(key=k, value=str(v))
    onnx.save(m, str(path))


def read_metadata(path: Path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def batch_axes_are_dynamic(path: Path, batch_axes: dict[str, int]) -> list[str]:
    """Names of inputs/outputs whose batch axis is a fixed number instead of a symbol."""
    graph = onnx.load(str(path)).graph
    fixed = []
    for v in list(graph.input) + list(graph.output):
        axis = batch_axes.get(v.name)
        if axis is not None and not v.type.tensor_type.shape.dim[axis].dim_param:
            fixed.append(v.name)
    return fixed


def cpu_session(path: Path):
    """A one-thread onnxruntime CPU session (parity checks, calibration, SNR), warnings silenced."""
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
def check_parity(model, out: Path, chunking: Chunking, batches: tuple[int, ...] = (1, 3), num_chunks: int = 4,
                 seed: int = 0) -> dict:
    """Max |onnxruntime - PyTorch| per graph of the folder ``out`` (raises if any exceeds
    ``PARITY_ATOL``), at each batch size in ``batches``."""
    g = torch.Generator().manual_seed(seed)
    enc, F = model.encoder, model.encoder.normalize.mean.numel()
    chunk, T = chunking.chunk_feature_frames, chunking.window_feature_frames
    graph = encoder_step(model)
    errs = {"encoder": 0.0, "encoder_streaming": 0.0, "decoder": 0.0, "joiner": 0.0}
    biased = getattr(model, "biasing", None) is not None
    bias = {}  # graph name -> extra feeds (the parity list's keys and values) and the same as tensors
    reference = model
    if biased:
        errs["bias_encoder"] = 0.0
        torch_rows, ort_rows = [], []
        bias_sess = cpu_session(out / BIAS_GRAPH)
        for phrase in PARITY_PHRASES:
            chars = phrase_chars([phrase])[0]
            want = BiasEncoderGraph(model)(chars)
            got = bias_sess.run(None, {"chars": chars.numpy()})
            for name, a, b in zip(("encoder_keys", "encoder_values", "decoder_keys", "decoder_values"), got, want):
                errs["bias_encoder"] = max(errs["bias_encoder"], _close(BIAS_GRAPH, a, b, f"{name} of {phrase!r}"))
            torch_rows.append(want)
            ort_rows.append(got)
        stacked = [torch.cat(parts) for parts in zip(*torch_rows)]  # (P, A) each
        ort_stacked = [np.concatenate(parts) for parts in zip(*ort_rows)]
        bias["encoder"] = ({"bias_keys": ort_stacked[0], "bias_values": ort_stacked[1]}, stacked[:2])
        bias["decoder"] = ({"bias_keys": ort_stacked[2], "bias_values": ort_stacked[3]}, stacked[2:]) if len(stacked) > 2 \
            else ({}, [])
        reference = BiasedModel(model, PARITY_PHRASES)  # the PyTorch decoding path, whole utterance
    sess = cpu_session(out / "encoder.onnx")
    # features around the model's own normalisation statistics, so every layer sees realistic ranges
    std = 1.0 / enc.normalize.inv_std
    for n in batches:
        x = enc.normalize.mean + std * torch.randn(n, chunk * (num_chunks - 1) + T, F, generator=g)
        h, c = graph.init_state(n)
        h_ort, c_ort = h.numpy(), c.numpy()
        full = reference.encode(x, torch.full((n,), x.size(1)))[0]
        wake_full = None if graph.wakeword is None else graph.wakeword.probabilities(enc(x, torch.full((n,), x.size(1)))[0])
        enc_feeds, enc_args = bias.get("encoder", ({}, []))
        for i in range(num_chunks):
            window = x[:, i * chunk : i * chunk + T]
            y, h, c, *wake = graph(window, h, c, *enc_args)  # PyTorch, state carried
            y_ort, h_ort, c_ort, *wake_ort = sess.run(None, {"x": window.numpy(), "state0": h_ort, "state1": c_ort, **enc_feeds})
            errs["encoder"] = max(errs["encoder"], _close("encoder.onnx", y_ort, y, f"encoder_out, chunk {i}, N={n}"),
                                  _close("encoder.onnx", h_ort, h, "new_state0"), _close("encoder.onnx", c_ort, c, "new_state1"),
                                  *(_close("encoder.onnx", a, b, "wake_prob") for a, b in zip(wake_ort, wake)))
            k = chunking.chunk_encoder_frames
            errs["encoder_streaming"] = max(errs["encoder_streaming"], _close(
                "encoder.onnx", y_ort, full[:, i * k : (i + 1) * k], f"chunk {i} vs the full-utterance forward, N={n}"),
                *(_close("encoder.onnx", a, wake_full[:, i * k : (i + 1) * k], f"wake_prob of chunk {i} vs the "
                         f"full-utterance forward, N={n}") for a in wake_ort))
    dec, join = cpu_session(out / "decoder.onnx"), cpu_session(out / "joiner.onnx")
    ctx = model.context_size
    dec_feeds = bias.get("decoder", ({}, []))[0]
    for n in batches:
        y = torch.randint(-1, model.joiner.output.out_features, (n, ctx), generator=g)
        want = reference.predict(y)[0]
        errs["decoder"] = max(errs["decoder"], _close("decoder.onnx", dec.run(None, {"y": y.numpy(), **dec_feeds})[0], want,
                                                      f"decoder_out, N={n}"))
        e = torch.randn(n, want.size(1), generator=g)
        got = join.run(None, {"encoder_out": e.numpy(), "decoder_out": want.numpy()})[0]
        errs["joiner"] = max(errs["joiner"], _close("joiner.onnx", got, model.join(e, want), f"logit, N={n}"))
    return errs


BATCH_AXES = {"x": 0, "state0": 1, "state1": 1, "encoder_out": 0, "new_state0": 1, "new_state1": 1,
              "y": 0, "decoder_out": 0, "logit": 0, "wake_prob": 0}
BIAS_AXES = {"bias_keys": {0: "P"}, "bias_values": {0: "P"}}  # the list's length, 0 included


def weights_digest(model) -> str:
    """A digest of the model's weights: every export of the same weights (each int8 flavour's float graphs
    included) carries the same one, an export of other weights another."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def write_graphs(model, out: Path, chunking: Chunking, unrolled: bool = False, fixed_batch: int | None = None) -> dict:
    """encoder/decoder/joiner.onnx of ``model`` (float32, eval) in ``out``, with sherpa-onnx metadata,
    checked against PyTorch; returns the parity errors. ``fixed_batch``: every shape fixed, batch
    included (what static-shape accelerators need), instead of a dynamic batch (asserted)."""
    enc = model.encoder
    graph = encoder_step(model, unrolled)
    layers, P, H = graph.state_dims()
    J, ctx, vocab = model.joiner.output.in_features, model.context_size, model.joiner.output.out_features
    T = chunking.window_feature_frames
    n = fixed_batch or 2  # batch-2 examples: the TorchScript exporter can specialise a batch of 1 to a constant

    def axes(d: dict) -> dict | None:
        return None if fixed_batch else {k: {v: "N"} for k, v in d.items()}

    # one id in the three graphs' metadata: a recognizer refuses a folder whose graphs come from different models
    export_id = weights_digest(model)
    h, c = graph.init_state(n)
    biasing = getattr(model, "biasing", None)
    bias_in, bias_args, dec_bias_in, dec_bias_args, bias_meta = [], (), [], (), {}
    if biasing is not None:
        if fixed_batch:
            raise ValueError("a biasing model's graphs take a list of any length: they cannot be exported with "
                             "every shape fixed")
        attention_dim = biasing.encoder_adapter.key.out_features
        bias_in, bias_args = ["bias_keys", "bias_values"], (torch.randn(3, attention_dim), torch.randn(3, attention_dim))
        if biasing.predictor_adapter is not None:
            dec_bias_in, dec_bias_args = bias_in, (torch.randn(3, attention_dim), torch.randn(3, attention_dim))
        kind = "acoustic+semantic" if biasing.semantic is not None else "acoustic"
        bias_meta = {"biasing": kind, "bias_attention_dim": attention_dim}
    wakeword = getattr(model, "wakeword", None)
    wake_out, wake_meta = [], {}
    if wakeword is not None:  # the routed frames in the graph (gather / scatter), the detector's output beside
        wake_out = ["wake_prob"]
        wake_meta = {"wake_word": wakeword.word, "wake_threshold": wakeword.threshold}
    enc_outputs = ["encoder_out", "new_state0", "new_state1", *wake_out]
    _export(graph, (torch.zeros(n, T, enc.normalize.mean.numel()), h, c, *bias_args), out / "encoder.onnx",
            ["x", "state0", "state1", *bias_in], enc_outputs,
            {**(axes({k: BATCH_AXES[k] for k in ("x", "state0", "state1", *enc_outputs)})
                or {}), **{k: BIAS_AXES[k] for k in bias_in}} or None)
    # our own keys beside sherpa-onnx's (it ignores them): which encoder, and how its state is laid out
    add_metadata(out / "encoder.onnx", {
        "model_type": "lstm", "version": 1, "model_author": "ondevice-asr", "decode_chunk_len": chunking.chunk_feature_frames,
        "T": T, "num_encoder_layers": layers, "d_model": P, "rnn_hidden_size": H,
        "encoder": type(enc).__name__, "state_layout": "lstm" if graph.packer is None else "packed", "export_id": export_id,
        **bias_meta, **wake_meta})
    _export(DecoderGraph(model), (torch.zeros(n, ctx, dtype=torch.int64), *dec_bias_args), out / "decoder.onnx",
            ["y", *dec_bias_in], ["decoder_out"], {**(axes({"y": 0, "decoder_out": 0}) or {}),
                                                   **{k: BIAS_AXES[k] for k in dec_bias_in}} or None)
    add_metadata(out / "decoder.onnx", {"vocab_size": vocab, "context_size": ctx, "export_id": export_id,
                                        **({"biasing": "acoustic"} if dec_bias_in else {})})
    if biasing is not None:
        outputs = ["encoder_keys", "encoder_values"] + (["decoder_keys", "decoder_values"] if dec_bias_in else [])
        _export(BiasEncoderGraph(model), (phrase_chars(["ANNA"])[0],), out / BIAS_GRAPH, ["chars"], outputs,
                {"chars": {1: "L"}})
        add_metadata(out / BIAS_GRAPH, {"export_id": export_id, "alphabet": ALPHABET})
    _export(JoinerGraph(model), (torch.zeros(n, J), torch.zeros(n, J)), out / "joiner.onnx",
            ["encoder_out", "decoder_out"], ["logit"], axes({"encoder_out": 0, "decoder_out": 0, "logit": 0}))
    add_metadata(out / "joiner.onnx", {"joiner_dim": J, "export_id": export_id})
    if not fixed_batch:
        for name in GRAPHS:
            fixed = batch_axes_are_dynamic(out / name, BATCH_AXES)
            if fixed:
                raise RuntimeError(f"{name}: batch axis of {', '.join(fixed)} was exported as a fixed size")
    return check_parity(model, out, chunking, batches=(fixed_batch,) if fixed_batch else (1, 3))
