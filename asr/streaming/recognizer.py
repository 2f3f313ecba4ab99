"""Stateful streaming recognition in PyTorch: samples in, growing partial results out
(``asr transcribe --streaming``).

The loop has sherpa-onnx's chunking (``asr.chunking``): each encoder call takes a window of
``chunk_feature_frames + 5`` feature frames, the 5 re-fed from the previous chunk, with streaming
fbank in front and a resumable search behind. Unlike sherpa-onnx (and ``asr.streaming.onnx``) it
also decodes the final partial window at the end of input, so the final result equals offline
decoding of the whole utterance exactly.

Shape legend: T frames, F mel bins.
"""

from __future__ import annotations

import torch

from asr.chunking import RECEPTIVE_FIELD_FEATURE_FRAMES, Chunking
from asr.decoding.search import search
from asr.features import StreamingFbank
from asr.frontend import NUM_MEL_BINS, PIECE_SAMPLES


class StreamingRecognizer:
    """``chunking``: what ``asr.chunking.chunking_for`` gives for the model (a Conformer streams only
    at its own chunk). ``bias``: a ``asr.models.transducer.BiasedModel`` of ``model`` (its bias list,
    encoded once), or None. ``lm``: shallow fusion (``asr.decoding.ngram_lm.LmFusion``), or None."""

    def __init__(self, model, tokenizer, chunking: Chunking, method: str = "greedy", beam: int = 4, bias=None,
                 lm=None) -> None:
        self.model, self.tokenizer, self.bias, self.lm = model, tokenizer, bias, lm
        self.chunking = chunking
        self.method, self.beam = method, beam
        self.fbank = StreamingFbank()
        self.frames = torch.zeros(0, NUM_MEL_BINS)  # (T, F) not yet consumed
        self.enc_state = model.encoder.init_state(1)
        self.search_state = None

    @torch.no_grad()
    def _run(self, x: torch.Tensor) -> None:
        out, out_lens, self.enc_state = self.model.encoder.streaming_forward(
            x.unsqueeze(0), torch.tensor([x.size(0)]), self.enc_state
        )
        searched = self.model if self.bias is None else self.bias
        enc = searched.project_encoder_out(out)  # (1, k, J)
        self.search_state = search(searched, enc, out_lens, self.method, self.beam, self.search_state,
                                   lm=self.lm)

    def accept_waveform(self, samples: torch.Tensor) -> None:
        """Feed (S,) samples in [-1, 1] at 16 kHz; decodes every chunk that became complete."""
        self.frames = torch.cat([self.frames, self.fbank.accept_waveform(samples)])
        width, chunk = self.chunking.window_feature_frames, self.chunking.chunk_feature_frames
        while self.frames.size(0) >= width:
            self._run(self.frames[:width])
            self.frames = self.frames[chunk:]  # keep the overlap for the next chunk

    def input_finished(self) -> None:
        """Flush the feature tail and decode what is left (the last, shorter chunk)."""
        self.frames = torch.cat([self.frames, self.fbank.input_finished()])
        if self.frames.size(0) >= RECEPTIVE_FIELD_FEATURE_FRAMES:
            self._run(self.frames)
        self.frames = self.frames[:0]

    def transcribe(self, samples: torch.Tensor, on_partial=None, piece_samples: int = PIECE_SAMPLES) -> str:
        """Feed a whole recording ``piece_samples`` at a time (100 ms, as a microphone would), calling
        ``on_partial(text)`` whenever the partial result changes; returns the final text."""
        last = ""
        for start in range(0, samples.numel(), piece_samples):
            self.accept_waveform(samples[start : start + piece_samples])
            if on_partial is not None and self.text != last:
                last = self.text
                on_partial(last)
        self.input_finished()
        return self.text

    @property
    def tokens(self) -> list[int]:
        return self.search_state.hyps[0] if self.search_state is not None else []

    @property
    def text(self) -> str:
        return self.tokenizer.decode(self.tokens)
