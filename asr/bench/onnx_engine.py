"""Our onnxruntime engines of ``asr bench latency`` (``onnx-fp32``, ``onnx-int8-*``), each run as its own
process: ``asr stream``'s loop (``asr.streaming.onnx.OnnxStream``, endpointing on) on an exported folder,
fed as a live microphone (``asr.bench.live``). It loads what ``asr stream`` loads, so its peak resident
memory is ``asr stream``'s.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from asr.bench.live import engine_arguments, peak_rss_mb, trace
from asr.chunking import TAIL_PADDING_S
from asr.streaming.endpoint import EndpointConfig
from asr.streaming.onnx import ENCODER_FRAME_S, OnnxStream, OnnxTransducer, decode_streams


class OurSession:
    """One utterance on ``asr stream``'s loop (OnnxStream, endpointing on)."""

    def __init__(self, model, method: str, beam: int) -> None:
        self.model = model
        self.s = OnnxStream(model, method, beam, TAIL_PADDING_S, endpoint=EndpointConfig(), auto_decode=False)

    def accept(self, piece: np.ndarray) -> None:
        self.s.accept_waveform(piece)

    def finish(self) -> None:  # appends the tail padding itself
        self.s.input_finished()

    def step(self) -> bool:
        return decode_streams([self.s]) is not None

    def poll(self) -> tuple[float | None, str | None]:
        first = self.s.first_token
        return (None if first is None else first.time_s + ENCODER_FRAME_S), (self.s.finals[0].reason if self.s.finals else None)

    def result(self) -> tuple[list[str], str]:
        final = self.s.finals[0] if self.s.finals else None
        tokens = final.tokens if final else self.s.tokens
        return self.model.sherpa_symbols(tokens), final.text if final else self.s.text



def run_engine(model, a) -> None:
    """Every utterance of the files list through ``model``; the traces and the peak RSS as JSON on stdout."""
    files = Path(a.files_list).read_text().split("\n")
    traces = [trace(OurSession(model, a.method, a.beam), f, a.max_silence) for f in files]
    print(json.dumps({"traces": traces, "peak_rss_mb": peak_rss_mb()}))


def main(argv: list[str] | None = None) -> None:
    """``python -m asr.bench.onnx_engine onnx-fp32|onnx-int8-* MODEL_DIR FILES_LIST ...``."""
    a = engine_arguments().parse_args(argv)
    torch.set_num_threads(a.threads)
    run_engine(OnnxTransducer(Path(a.model_dir), num_threads=a.threads), a)


if __name__ == "__main__":
    main()
