"""Streaming recognition on onnxruntime from a sherpa-onnx model folder (what ``asr export`` writes).

:class:`OnnxTransducer` loads ``encoder.onnx``, ``decoder.onnx``, ``joiner.onnx`` and ``tokens.txt``
and offers the interface ``asr.decoding.search`` decodes with (``predict``, ``join``,
``predictor.context_size``, ``blank_id``), so greedy and modified beam search are the same code as
for PyTorch models. :class:`OnnxStream` runs sherpa-onnx's loop exactly, so that both give the same
tokens (tests): streaming fbank, an encoder call on ``T`` frames whenever ``processed + T <
frames ready`` (strict), the stream advancing by ``decode_chunk_len``, and at the end
``tail_padding_s`` seconds of zeros appended before the features are flushed (the last partial chunk
is never decoded, as in sherpa-onnx).

Shape legend: N batch, T frames per encoder call, F mel bins, J joiner dim, V vocabulary.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from asr.decoding.search import search
from asr.errors import UserError
from asr.features import NUM_MEL_BINS, SAMPLE_RATE_HZ, StreamingFbank
from asr.streaming.sherpa_client import TAIL_PADDING_S

MODEL_FILES = ("encoder.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt")
LSTM_META = ("model_type", "decode_chunk_len", "T", "num_encoder_layers", "d_model", "rnn_hidden_size")


def read_tokens(path: Path) -> list[str]:
    """``tokens.txt`` (``<symbol> <id>`` per line, ids 0..V-1) -> symbols by id."""
    symbols = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.rsplit(maxsplit=1)
        if not parts:
            continue
        if not parts[-1].isdigit():
            raise UserError(f"{path}:{n}: expected '<symbol> <id>', got {line!r}; write it with 'asr export'")
        symbols[int(parts[-1])] = parts[0] if len(parts) == 2 else " "
    if sorted(symbols) != list(range(len(symbols))):
        raise UserError(f"{path}: ids are not 0..{len(symbols) - 1}; write it with 'asr export'")
    return [symbols[i] for i in range(len(symbols))]


class OnnxTransducer:
    def __init__(self, model_dir: str | Path, num_threads: int = 1) -> None:
        import onnxruntime as ort

        d = Path(model_dir)
        missing = [f for f in MODEL_FILES if not (d / f).is_file()]
        if missing:
            raise UserError(f"{d}: incomplete model folder, missing {', '.join(missing)}; "
                            "create it with 'asr export --checkpoint CKPT --out DIR'")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        sessions = []
        for f in MODEL_FILES[:3]:
            try:
                sessions.append(ort.InferenceSession(str(d / f), opts, providers=["CPUExecutionProvider"]))
            except Exception as e:
                first = (str(e).splitlines() or [type(e).__name__])[0]
                raise UserError(f"{d / f}: onnxruntime cannot load it ({first[:200]}); re-export with 'asr export'") from None
        self.encoder, self.decoder, self.joiner = sessions
        meta = self.encoder.get_modelmeta().custom_metadata_map
        dec_meta = self.decoder.get_modelmeta().custom_metadata_map
        absent = [k for k in LSTM_META if k not in meta] + [k for k in ("context_size",) if k not in dec_meta]
        if absent or meta["model_type"] != "lstm":
            raise UserError(f"{d}: not a model_type=lstm streaming transducer (missing metadata "
                            f"{', '.join(absent) or 'model_type=lstm'}); re-export it with 'asr export'")
        self.chunk, self.T = int(meta["decode_chunk_len"]), int(meta["T"])
        self.layers, self.d_model, self.hidden = int(meta["num_encoder_layers"]), int(meta["d_model"]), int(meta["rnn_hidden_size"])
        self.symbols = read_tokens(d / "tokens.txt")
        self.blank_id = 0
        self.unk_id = self.symbols.index("<unk>") if "<unk>" in self.symbols else None  # decoded like blank
        self.predictor = SimpleNamespace(context_size=int(dec_meta["context_size"]), init_state=lambda batch, device="cpu": None)

    def init_state(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        return (np.zeros((self.layers, batch, self.d_model), np.float32),
                np.zeros((self.layers, batch, self.hidden), np.float32))

    def encode_chunk(self, x: np.ndarray, state):
        """(N, T, F) features, state -> (N, T', J) torch tensor, new state."""
        out, h, c = self.encoder.run(None, {"x": x, "state0": state[0], "state1": state[1]})
        return torch.from_numpy(out), (h, c)

    def predict(self, y_ctx: torch.Tensor, state=None):
        out = self.decoder.run(None, {"y": y_ctx.to(torch.int64).numpy()})[0]
        return torch.from_numpy(out), None

    def join(self, enc: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        if enc.shape != pred.shape or enc.dim() != 2:  # the searches pass (N, J) pairs or (1, J) x (B, J)
            enc, pred = torch.broadcast_tensors(enc, pred)
        shape = enc.shape
        logit = self.joiner.run(None, {"encoder_out": enc.reshape(-1, shape[-1]).contiguous().numpy(),
                                       "decoder_out": pred.reshape(-1, shape[-1]).contiguous().numpy()})[0]
        return torch.from_numpy(logit) if len(shape) == 2 else torch.from_numpy(logit).reshape(*shape[:-1], -1)

    def text(self, tokens: list[int]) -> str:
        return "".join(self.symbols[t] for t in tokens).replace("\u2581", " ").strip()


class OnnxStream:
    """One utterance through sherpa-onnx's streaming loop; ``tokens`` grow as chunks are decoded."""

    def __init__(self, model: OnnxTransducer, method: str = "greedy", beam: int = 4, tail_padding_s: float = TAIL_PADDING_S) -> None:
        self.model, self.method, self.beam = model, method, beam
        self.tail_padding = int(tail_padding_s * SAMPLE_RATE_HZ)
        self.fbank = StreamingFbank()
        self.frames = np.zeros((0, NUM_MEL_BINS), np.float32)  # frames from the next chunk's start on
        self.state = model.init_state(1)
        self.search_state = None

    def accept_waveform(self, samples: np.ndarray) -> None:
        """(S,) float samples in [-1, 1] at 16 kHz."""
        self._add(self.fbank.accept_waveform(torch.as_tensor(samples, dtype=torch.float32)))

    def input_finished(self) -> None:
        if self.tail_padding:
            self._add(self.fbank.accept_waveform(torch.zeros(self.tail_padding)))
        self._add(self.fbank.input_finished())

    def _add(self, new: torch.Tensor) -> None:
        self.frames = np.concatenate([self.frames, new.numpy().astype(np.float32)])
        m = self.model
        while m.T < len(self.frames):  # sherpa-onnx's IsReady: processed + T < frames ready (strict)
            enc, self.state = m.encode_chunk(self.frames[None, : m.T], self.state)
            self.search_state = search(m, enc, torch.tensor([enc.size(1)]), self.method, self.beam, self.search_state)
            self.frames = self.frames[m.chunk :]

    @property
    def tokens(self) -> list[int]:
        return self.search_state.hyps[0] if self.search_state is not None else []

    @property
    def text(self) -> str:
        return self.model.text(self.tokens)
