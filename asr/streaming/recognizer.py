"""Stateful streaming recognition in PyTorch: samples in, growing partial results out.

The loop has sherpa-onnx's chunking semantics: ``decode_chunk_frames`` feature frames per step
(its ``decode_chunk_len``) plus the encoder's ``overlap_frames`` re-fed from the previous chunk
(``T = decode_chunk_len + overlap``), streaming fbank in front and a resumable search behind.
Unlike sherpa-onnx it also decodes the final partial chunk at the end of input, so the final
result equals offline decoding of the whole utterance exactly.

Shape legend: T frames, F mel bins.
"""

from __future__ import annotations

import torch

from asr.decoding.search import search
from asr.features import StreamingFbank


class StreamingRecognizer:
    def __init__(self, model, tokenizer, decode_chunk_frames: int = 32, method: str = "greedy", beam: int = 4) -> None:
        sub = model.encoder.subsampling_factor
        if decode_chunk_frames <= 0 or decode_chunk_frames % sub:
            raise ValueError(f"decode_chunk_frames={decode_chunk_frames}: must be a positive multiple of {sub}")
        self.model, self.tokenizer = model, tokenizer
        self.chunk = decode_chunk_frames
        self.overlap = model.encoder.overlap_frames
        self.method, self.beam = method, beam
        self.fbank = StreamingFbank()
        self.frames = torch.zeros(0, model.encoder.normalize.mean.numel())  # (T, F) not yet consumed
        self.enc_state = model.encoder.init_state(1)
        self.search_state = None

    @torch.no_grad()
    def _run(self, x: torch.Tensor) -> None:
        out, out_lens, self.enc_state = self.model.encoder.streaming_forward(
            x.unsqueeze(0), torch.tensor([x.size(0)]), self.enc_state
        )
        enc = self.model.joiner.encoder_proj(out)  # (1, k, J)
        self.search_state = search(self.model, enc, out_lens, self.method, self.beam, self.search_state)

    def accept_waveform(self, samples: torch.Tensor) -> None:
        """Feed (S,) samples in [-1, 1] at 16 kHz; decodes every chunk that became complete."""
        self.frames = torch.cat([self.frames, self.fbank.accept_waveform(samples)])
        width = self.chunk + self.overlap
        while self.frames.size(0) >= width:
            self._run(self.frames[:width])
            self.frames = self.frames[self.chunk :]  # keep the overlap for the next chunk

    def input_finished(self) -> None:
        """Flush the feature tail and decode what is left (the last, shorter chunk)."""
        self.frames = torch.cat([self.frames, self.fbank.input_finished()])
        if self.frames.size(0) >= self.model.encoder.subsampling.receptive_field:
            self._run(self.frames)
        self.frames = self.frames[:0]

    @property
    def tokens(self) -> list[int]:
        return self.search_state.hyps[0] if self.search_state is not None else []

    @property
    def text(self) -> str:
        return self.tokenizer.decode(self.tokens)
