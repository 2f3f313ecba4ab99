"""The sherpa-onnx engine of ``asr bench latency``, run as its own process: the PyPI
``sherpa_onnx.OnlineRecognizer`` on the float32 folder, endpoint detection on with our rules' values,
fed as a live microphone (``asr.bench.live``). It loads no torch: its peak resident memory is
sherpa-onnx's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from asr.bench.live import engine_arguments, peak_rss_mb, trace
from asr.bench.sherpa_client import sherpa_recognizer
from asr.chunking import ENCODER_FRAME_MS, TAIL_PADDING_S
from asr.frontend import SAMPLE_RATE_HZ
from asr.streaming.endpoint import EndpointConfig


class SherpaSession:
    """One utterance on sherpa-onnx's OnlineRecognizer (endpoint detection on)."""

    def __init__(self, rec) -> None:
        self.rec, self.s, self.r = rec, rec.create_stream(), None

    def accept(self, piece: np.ndarray) -> None:
        self.s.accept_waveform(SAMPLE_RATE_HZ, piece)

    def finish(self) -> None:
        self.s.accept_waveform(SAMPLE_RATE_HZ, np.zeros(int(TAIL_PADDING_S * SAMPLE_RATE_HZ), np.float32))
        self.s.input_finished()

    def step(self) -> bool:
        if not self.rec.is_ready(self.s):
            return False
        self.rec.decode_stream(self.s)
        return True

    def poll(self) -> tuple[float | None, str | None]:  # called outside the timed steps
        self.r = self.rec.get_result_all(self.s)
        first = self.r.timestamps[0] + ENCODER_FRAME_MS / 1000 if self.r.tokens else None  # its encoder frame's end
        return first, ("endpoint" if self.rec.is_endpoint(self.s) else None)

    def result(self) -> tuple[list[str], str]:
        self.r = self.rec.get_result_all(self.s)
        return list(self.r.tokens), self.r.text.strip()


def main(argv: list[str] | None = None) -> None:
    """``python -m asr.bench.sherpa_engine sherpa-onnx-fp32 MODEL_DIR FILES_LIST ...``: JSON on stdout."""
    a = engine_arguments().parse_args(argv)
    cfg = EndpointConfig()
    rec = sherpa_recognizer(
        a.model_dir, a.threads, "greedy_search" if a.method == "greedy" else a.method, a.beam,
        enable_endpoint_detection=True, rule1_min_trailing_silence=cfg.rule1.min_trailing_silence_s,
        rule2_min_trailing_silence=cfg.rule2.min_trailing_silence_s,
        rule3_min_utterance_length=cfg.rule3.min_utterance_length_s)
    traces = [trace(SherpaSession(rec), f, a.max_silence) for f in Path(a.files_list).read_text().split("\n")]
    print(json.dumps({"traces": traces, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
