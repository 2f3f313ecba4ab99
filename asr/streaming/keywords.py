"""Keyword spotting on a stream: sherpa-onnx's ``KeywordSpotter`` loop (its ``IsReady``, windows of ``T``
feature frames advancing by ``decode_chunk_len``, tail padding at the end of input) around
``asr.decoding.keywords.keyword_search``, on any ``StreamingTransducer`` (an exported folder on
onnxruntime for ``asr kws``).

Two resets, as sherpa-onnx's spotter and its examples do them: the stream starts afresh (encoder
state and search) after a detection (the examples' ``reset_stream`` right after a keyword), and
before an encoder call once the best hypothesis has seen more than ``AUTO_RESET_S`` of blank frames
(sherpa-onnx's ``DecodeStreams``), so that the encoder state never drifts over hours of silence."""

from __future__ import annotations

import json
import os
from itertools import chain

import numpy as np
import torch

from asr.audio import PcmReader
from asr.chunking import TAIL_PADDING_S
from asr.decoding.context_graph import ContextGraph
from asr.decoding.keywords import Detection, keyword_search, kws_init

AUTO_RESET_S = 1.5  # sherpa-onnx: "it resets automatically after detecting 1.5 seconds of silence"
from asr.features import SherpaFbank
from asr.frontend import NUM_MEL_BINS, PIECE_SAMPLES, SAMPLE_RATE_HZ
from asr.streaming.onnx import ENCODER_FRAME_S, StreamingTransducer


class KeywordStream:
    """One audio stream through the keyword spotter; ``detections`` grow as chunks are decoded."""

    def __init__(self, model: StreamingTransducer, graph: ContextGraph, max_active_paths: int = 4,
                 num_trailing_blanks: int = 1, tail_padding_s: float = TAIL_PADDING_S) -> None:
        if max_active_paths < 1 or num_trailing_blanks < 0 or tail_padding_s < 0:
            raise ValueError(f"max_active_paths={max_active_paths} must be >= 1, num_trailing_blanks="
                             f"{num_trailing_blanks} >= 0 and tail_padding_s={tail_padding_s} >= 0")
        self.model, self.graph = model, graph
        self.max_active_paths, self.num_trailing_blanks = max_active_paths, num_trailing_blanks
        self.tail_padding = int(tail_padding_s * SAMPLE_RATE_HZ)
        self.fbank = SherpaFbank()
        self.frames = np.zeros((0, NUM_MEL_BINS), np.float32)  # (T, F) from the next chunk's start on
        self.frame_offset = 0  # encoder frames decoded before the current search state started
        self.detections: list[Detection] = []
        self._reset()

    def _reset(self) -> None:
        """sherpa-onnx's Reset: the encoder's initial state and an empty search (the features go on)."""
        self.state = self.model.init_state(1)
        if getattr(self, "search_state", None) is not None:
            self.frame_offset += self.search_state.frame_offset
        self.search_state = kws_init(self.model, self.graph)

    def accept_waveform(self, samples: np.ndarray) -> None:
        """(S,) float samples in [-1, 1] at 16 kHz; decodes every window that is ready."""
        self._add(self.fbank.accept_waveform(torch.as_tensor(samples, dtype=torch.float32)))

    def input_finished(self) -> None:
        if self.tail_padding:
            self._add(self.fbank.accept_waveform(torch.zeros(self.tail_padding)))
        self._add(self.fbank.input_finished())

    def _add(self, new: torch.Tensor) -> None:
        self.frames = np.concatenate([self.frames, new.numpy().astype(np.float32)])
        chunking = self.model.chunking
        while chunking.window_feature_frames < len(self.frames):  # sherpa-onnx's IsReady (strict)
            if self.search_state.num_trailing_blanks * ENCODER_FRAME_S > AUTO_RESET_S:
                self._reset()
            enc, self.state = self.model.encode_chunk(self.frames[None, : chunking.window_feature_frames], self.state)
            self.search_state = keyword_search(self.model, enc, self.graph, self.search_state, self.max_active_paths,
                                               self.num_trailing_blanks)
            self.frames = self.frames[chunking.chunk_feature_frames :]
            if self.search_state.detections:
                offset = self.frame_offset
                self.detections += [Detection(d.keyword, d.tokens, [f + offset for f in d.frames], offset, d.score)
                                    for d in self.search_state.detections]
                self._reset()

    def describe(self, detection: Detection) -> dict:
        """A detection as ``asr kws`` prints it: the keyword, its tokens and when they were said."""
        return {"keyword": detection.keyword, "score": round(detection.score, 4),
                "start_s": round(detection.frames[0] * ENCODER_FRAME_S, 2),
                "end_s": round((detection.frames[-1] + 1) * ENCODER_FRAME_S, 2),
                "tokens": [self.model.symbols[t] for t in detection.tokens],
                "timestamps": [round(f * ENCODER_FRAME_S, 2) for f in detection.frames]}


def file_pieces(x: np.ndarray, piece_samples: int = PIECE_SAMPLES):
    """(S,) samples as a microphone hands them over: ``piece_samples`` (100 ms) at a time."""
    return (x[start : start + piece_samples] for start in range(0, len(x), piece_samples))


def stdin_pieces(fd: int):
    """Raw 16 kHz s16le PCM (or a wav) read from file descriptor ``fd`` as it arrives, as float samples."""
    reader = PcmReader()
    while data := os.read(fd, 2 * PIECE_SAMPLES):  # 16-bit samples
        yield reader.feed(data)
    yield reader.finish()


def spot(stream: KeywordStream, pieces, on_detection=None) -> list[Detection]:
    """Feed ``pieces`` of samples to ``stream``, then end its input; ``on_detection`` is called with each
    detection as soon as it is made. Returns all the detections."""
    seen = 0
    for piece in chain(pieces, [None]):  # lazily: stdin's pieces arrive as they are spoken
        if piece is None:
            stream.input_finished()
        elif piece.size:
            stream.accept_waveform(piece)
        for detection in stream.detections[seen:]:
            if on_detection is not None:
                on_detection(detection)
        seen = len(stream.detections)
    return stream.detections


def spot_stdin(model: StreamingTransducer, graph: ContextGraph, fd: int, write, max_active_paths: int = 4,
               num_trailing_blanks: int = 1, name: str = "-") -> int:
    """``asr kws -``: PCM on stdin (:func:`stdin_pieces`), one JSON line per detection as it happens;
    returns the number of detections."""
    stream = KeywordStream(model, graph, max_active_paths, num_trailing_blanks)
    return len(spot(stream, stdin_pieces(fd), lambda d: write(json.dumps(
        {"stream": name, "type": "keyword", **stream.describe(d)}))))


def spot_files(model: StreamingTransducer, graph: ContextGraph, names: list[str], audio: list[np.ndarray], write,
               max_active_paths: int = 4, num_trailing_blanks: int = 1) -> int:
    """``asr kws``: each file's (S,) samples fed 100 ms at a time (:func:`file_pieces`), one JSON line written
    per detection as it happens; returns the number of detections."""
    count = 0
    for name, x in zip(names, audio):
        stream = KeywordStream(model, graph, max_active_paths, num_trailing_blanks)
        count += len(spot(stream, file_pieces(x), lambda d, name=name, stream=stream: write(json.dumps(
            {"stream": name, "type": "keyword", **stream.describe(d)}))))
    return count
