"""A PyTorch checkpoint as a streaming engine in sherpa-onnx's layout: the very modules ``asr export``
traces (:class:`EncoderStep`, :class:`StatePacker`), and :class:`TorchTransducer`, which runs them
eagerly behind :class:`asr.streaming.onnx.StreamingTransducer` (the latency benchmark's PyTorch engine).

sherpa-onnx's ``model_type=lstm`` contract gives every encoder call two state tensors,
``state0 (L, N, P)`` and ``state1 (L, N, H)``, batch on axis 1. The LSTM encoder's own state is
exactly that (``h``, ``c``); the Conformer's and the ConvRNN-T's states (caches, running sums, frame
counts) are packed into the two tensors by :class:`StatePacker`, which sherpa-onnx carries without
looking inside.

Shape legend: N batch, T feature frames per call, T' encoder frames, J joiner dim, L/R state rows,
P/W state widths.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from asr.checkpoint import load_model
from asr.chunking import Chunking, chunking_for
from asr.errors import UserError
from asr.models.lstm import LSTMEncoder
from asr.streaming.onnx import StreamingTransducer, read_tokens


class StatePacker:
    """Any encoder's streaming state <-> the two tensors of sherpa-onnx's ``model_type=lstm``.

    sherpa-onnx treats the lstm states as opaque: it zero-fills ``state0 (R, N, W)`` and
    ``state1 (R, N, W)`` from the metadata and concatenates / splits them on axis 1 to batch streams.
    So every per-stream value of a state tuple (the Conformer's attention and conv caches and frame
    count, the ConvRNN-T's conv caches, SE sums and LSTM state) is flattened, in tuple order, into one
    vector per stream, zero-padded to ``2 R W`` and split into the two tensors. Integer entries (frame
    counts) ride as float32, exact below 2**24 (186 hours of 40 ms frames). The encoder's initial
    state must be all zeros (checked), as sherpa-onnx makes it.
    """

    def __init__(self, encoder, width: int) -> None:
        one, two = encoder.init_state(1), encoder.init_state(2)
        if any(bool(t.any()) for t in one):
            raise UserError(f"the {type(encoder).__name__} state does not start at zero, which sherpa-onnx's "
                            "model_type=lstm contract needs")
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


def is_lstm(model) -> bool:
    return isinstance(model.encoder, LSTMEncoder)


class EncoderStep(nn.Module):
    """One streaming window: (x, state0, state1) -> (projected encoder_out, new state0, new state1).

    The LSTM encoder's state is sherpa-onnx's own lstm layout, ``h (L, N, P)``, ``c (L, N, H)``;
    ``lstm_stack``: a module that replaces the encoder's LSTM stack with the same weights and state
    (the export's unrolled cells). Other encoders' states travel packed (:class:`StatePacker`)."""

    def __init__(self, model, lstm_stack: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.proj = model.joiner.encoder_proj
        self.lstm_stack = lstm_stack
        self.packer = None if is_lstm(model) else StatePacker(model.encoder, model.encoder.output_dim)
        # a biasing model's encoder adapter, applied before the projection when bias keys are given
        self.adapter = None if getattr(model, "biasing", None) is None else model.biasing.encoder_adapter
        # a wake-word model's detector and branches (asr.models.wakeword): the frames are routed, and the
        # detector's probabilities are a fourth output
        self.wakeword = getattr(model, "wakeword", None)

    def init_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder.init_state(batch) if self.packer is None else self.packer.zeros(batch)

    def state_dims(self) -> tuple[int, int, int]:
        """sherpa-onnx's num_encoder_layers, d_model, rnn_hidden_size."""
        if self.packer is not None:
            return self.packer.rows, self.packer.width, self.packer.width
        stack = self.encoder.stack
        return len(stack.layers), stack.output_dim, stack.hidden_dim

    def forward(self, x: torch.Tensor, state0: torch.Tensor, state1: torch.Tensor,
                bias_keys: torch.Tensor | None = None, bias_values: torch.Tensor | None = None):
        """``bias_keys``, ``bias_values`` (P, A): a biasing model's list, as its encoder adapter's keys and
        values of the phrases (the no-bias entry is the adapter's own); None for an unbiased model. A
        wake-word model routes each frame to the adapter or its wake-word branch and also returns the
        detector's probabilities ``wake_prob`` (N, T')."""
        x_lens = torch.full((x.size(0),), x.size(1), dtype=torch.int64)
        if self.lstm_stack is not None:
            x, _ = self.encoder.subsampling(self.encoder.normalize(x), x_lens)
            out, (state0, state1) = self.lstm_stack(x, (state0, state1))
        else:
            state = (state0, state1) if self.packer is None else self.packer.unpack(state0, state1)
            out, _, state = self.encoder.streaming_forward(x, x_lens, state)
            state0, state1 = state if self.packer is None else self.packer.pack(state)
        def full(h: torch.Tensor) -> torch.Tensor:  # the biasing adapter with the list, if there is one
            return h if bias_keys is None else self.adapter.attend_phrases(h, bias_keys, bias_values)

        if self.wakeword is None:
            return self.proj(full(out)), state0, state1
        out, wake_prob = self.wakeword.route(out, full)
        return self.proj(out), state0, state1, wake_prob


class TorchTransducer(StreamingTransducer):
    """A checkpoint behind the interface of ``OnnxTransducer``: :class:`EncoderStep` (what the export
    traces: same chunking, same state layout) run eagerly, and the model's own predictor and joiner.
    ``tokens``: the folder's ``tokens.txt`` (the symbols the exported twin reports)."""

    def __init__(self, checkpoint: str | Path, tokens: str | Path, chunk_feature_frames: int | None = None) -> None:
        self.model = load_model(checkpoint)[0].float().eval()
        self.step = EncoderStep(self.model).eval()
        wakeword = getattr(self.model, "wakeword", None)
        self.wake_word = None if wakeword is None else wakeword.word
        self.chunking: Chunking = chunking_for(self.model.encoder, chunk_feature_frames, str(checkpoint))
        self.layers, self.d_model, self.hidden = self.step.state_dims()
        self._set_symbols(read_tokens(Path(tokens)), self.model.context_size)

    @torch.no_grad()
    def encode_chunk(self, x: np.ndarray, state):
        out, s0, s1, *wake = self.step(torch.from_numpy(x), torch.from_numpy(state[0]), torch.from_numpy(state[1]))
        self.wake_prob = wake[0].numpy() if wake else None
        return out, (s0.numpy(), s1.numpy())

    @torch.no_grad()
    def predict(self, y_ctx, state=None):
        return self.model.predict(y_ctx)[0], None

    @torch.no_grad()
    def join(self, enc, pred):
        return self.model.join(enc, pred)
