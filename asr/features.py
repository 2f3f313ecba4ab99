"""Log-mel filter-bank features: exactly the front end that sherpa-onnx computes at run time.

kaldi fbank, 80 mel bins, 25 ms window / 10 ms shift at 16 kHz, povey window, pre-emphasis 0.97,
DC removal, dither 0, ``snip_edges=False`` (frames are centred; the signal is reflected at both
ends), ``low_freq=20``, ``high_freq=-400`` (7600 Hz), samples in [-1, 1], natural-log mel energies.
No normalisation here: the model normalises its own input (``asr.modules.normalize``), so an
exported model needs nothing but these features.

Three entry points share the one definition in :func:`fbank`:
  * :func:`fbank` -- offline, a whole waveform at once;
  * :class:`StreamingFbank` -- samples in, frames out, chunk by chunk; its frames equal the offline
    frames exactly (each frame depends only on its 400 samples, and the reflections at both ends
    are rebuilt the way ``torchaudio.compliance.kaldi`` builds them);
  * ``asr.data.fbank.KaldiFbank`` -- the lhotse feature extractor that computes and caches training
    features with :func:`fbank`.

:class:`SherpaFbank` is the same front end computed by kaldi-native-fbank, the library sherpa-onnx
links: its frames differ from :func:`fbank`'s by float rounding (max |diff| ~7e-4 in log-mel, tested)
and equal sherpa-onnx's bit for bit as long as the PyPI kaldi-native-fbank (pinned, 1.23.0) computes
as the one sherpa-onnx 2.0.1 bundles (tokens then match: tests/export/test_sherpa.py). The onnxruntime streaming decoder uses it, so that ``asr
stream`` and sherpa-onnx agree token for token even on int8 models, where such rounding can flip a
quantization step (200/200 utterances equal with it, 198/200 with :class:`StreamingFbank`).

Shape legend: S samples, T frames, F = 80 mel bins.
"""

from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi

from asr.frontend import (DITHER, FRAME_LENGTH_MS, FRAME_SHIFT_MS, HIGH_FREQ_HZ, LOW_FREQ_HZ, NUM_MEL_BINS,
                          SAMPLE_RATE_HZ)

WINDOW_SHIFT = SAMPLE_RATE_HZ * FRAME_SHIFT_MS // 1000  # 160 samples
WINDOW_SIZE = SAMPLE_RATE_HZ * FRAME_LENGTH_MS // 1000  # 400 samples
# With snip_edges=False frame i covers samples [i*160 - 120, i*160 + 280): the window is centred on
# the middle of its 10 ms hop, so 400//2 - 160//2 = 120 samples hang over the left edge.
LEFT_PAD = WINDOW_SIZE // 2 - WINDOW_SHIFT // 2

_KALDI_OPTS = dict(
    num_mel_bins=NUM_MEL_BINS,
    frame_length=float(FRAME_LENGTH_MS),
    frame_shift=float(FRAME_SHIFT_MS),
    dither=DITHER,
    low_freq=LOW_FREQ_HZ,
    high_freq=HIGH_FREQ_HZ,
    sample_frequency=float(SAMPLE_RATE_HZ),
)


def num_frames(num_samples: int) -> int:
    """Frames that :func:`fbank` returns for ``num_samples`` samples (kaldi, snip_edges=False)."""
    return (num_samples + WINDOW_SHIFT // 2) // WINDOW_SHIFT


def fbank(samples: torch.Tensor) -> torch.Tensor:
    """(S,) float samples in [-1, 1] at 16 kHz -> (T, 80) log-mel features, T = num_frames(S)."""
    if samples.dim() != 1:
        raise ValueError(f"fbank expects a 1-D waveform, got shape {tuple(samples.shape)}")
    count = num_frames(samples.numel())
    if count == 0:
        return torch.zeros(0, NUM_MEL_BINS)
    if samples.numel() >= WINDOW_SIZE:
        return kaldi.fbank(samples.float()[None], snip_edges=False, **_KALDI_OPTS)
    # Shorter than one window (torchaudio refuses these): reflect sample indices as kaldi does,
    # j < 0 -> -j - 1 and j >= S -> 2S - 1 - j, repeated until j lies inside the signal.
    n = samples.numel()
    j = torch.arange(-LEFT_PAD, (count - 1) * WINDOW_SHIFT + WINDOW_SIZE - LEFT_PAD)
    while bool(((j < 0) | (j >= n)).any()):
        j = torch.where(j < 0, -j - 1, j)
        j = torch.where(j >= n, 2 * n - 1 - j, j)
    return _fbank_snipped(samples.float()[j], count)


def _fbank_snipped(padded: torch.Tensor, frames: int) -> torch.Tensor:
    """The first ``frames`` frames of an already padded signal (frame i = padded[i*160 : i*160+400])."""
    return kaldi.fbank(padded[None], snip_edges=True, **_KALDI_OPTS)[:frames]


class StreamingFbank:
    """Samples in, frames out; the frames equal :func:`fbank` of the whole signal.

    Frame i needs padded samples [i*160, i*160+400), where the padded signal is
    ``flip(s[:120]) ++ s ++ flip(s)`` (torchaudio's reflection). Frames whose window lies inside
    the samples received so far are emitted at once; the last few, which need the right reflection,
    come out of :meth:`input_finished`. Only the samples from the next frame's start are kept, so
    memory stays bounded on endless input.

    Example::

        fb = StreamingFbank()
        for chunk in chunks:             # any sizes
            frames = fb.accept_waveform(chunk)   # (T_new, 80), possibly T_new == 0
        frames = fb.input_finished()      # the tail
    """

    def __init__(self) -> None:
        self._head = torch.zeros(0)  # raw samples until LEFT_PAD of them are known
        self._padded = torch.zeros(0)  # padded-signal samples from the next frame's start on
        self._num_samples = 0
        self.num_frames_emitted = 0
        self.finished = False

    def accept_waveform(self, samples: torch.Tensor) -> torch.Tensor:
        """Append (S,) samples in [-1, 1]; return the (T_new, 80) frames that became ready."""
        if self.finished:
            raise RuntimeError("accept_waveform after input_finished; create a new StreamingFbank")
        samples = samples.detach().float().reshape(-1)
        self._num_samples += samples.numel()
        if self.num_frames_emitted == 0:
            # Keep the raw head until the first frame is out: the left reflection needs its first
            # LEFT_PAD samples, and a signal too short for any frame is flushed offline.
            self._head = torch.cat([self._head, samples])
            if self._head.numel() < LEFT_PAD:
                return torch.zeros(0, NUM_MEL_BINS)
            self._padded = torch.cat([self._head[:LEFT_PAD].flip(0), self._head])
        else:
            self._padded = torch.cat([self._padded, samples])
        return self._emit(max(0, (self._padded.numel() - WINDOW_SIZE) // WINDOW_SHIFT + 1))

    def input_finished(self) -> torch.Tensor:
        """Flush: return the remaining frames, which use the reflection at the end of the signal."""
        if self.finished:
            return torch.zeros(0, NUM_MEL_BINS)
        self.finished = True
        total = num_frames(self._num_samples)
        if self.num_frames_emitted == 0:  # the whole (short) signal is still in the head
            return fbank(self._head)
        remaining = total - self.num_frames_emitted
        if remaining <= 0:
            return torch.zeros(0, NUM_MEL_BINS)
        # Right reflection: padded sample at raw index S + k is s[S - 1 - k]. needed <= 200 (from
        # remaining = num_frames(S) - emitted), and the kept buffer starts at a frame that was not
        # ready, so it holds more than WINDOW_SIZE - WINDOW_SHIFT = 240 raw samples.
        needed = (remaining - 1) * WINDOW_SHIFT + WINDOW_SIZE - self._padded.numel()
        if needed > 0:
            self._padded = torch.cat([self._padded, self._padded[-needed:].flip(0)])
        return self._emit(remaining)

    def _emit(self, count: int) -> torch.Tensor:
        if count <= 0:
            return torch.zeros(0, NUM_MEL_BINS)
        frames = _fbank_snipped(self._padded, count)
        self._padded = self._padded[count * WINDOW_SHIFT :]
        self._head = torch.zeros(0)
        self.num_frames_emitted += count
        return frames


class SherpaFbank:
    """:class:`StreamingFbank`'s interface on kaldi-native-fbank's ``OnlineFbank`` (sherpa-onnx's
    front end, same options). Frames handed out are popped, so memory stays bounded."""

    def __init__(self) -> None:
        opts = knf.FbankOptions()
        opts.frame_opts.samp_freq = SAMPLE_RATE_HZ
        opts.frame_opts.frame_shift_ms = FRAME_SHIFT_MS
        opts.frame_opts.frame_length_ms = FRAME_LENGTH_MS
        opts.frame_opts.dither = DITHER
        opts.frame_opts.snip_edges = False
        opts.mel_opts.num_bins = NUM_MEL_BINS
        opts.mel_opts.low_freq = LOW_FREQ_HZ
        opts.mel_opts.high_freq = HIGH_FREQ_HZ
        self._fbank = knf.OnlineFbank(opts)
        self.num_frames_emitted = 0

    def accept_waveform(self, samples) -> torch.Tensor:
        """Append (S,) samples in [-1, 1] at 16 kHz; return the (T_new, 80) frames that became ready."""
        self._fbank.accept_waveform(SAMPLE_RATE_HZ, np.asarray(samples, dtype=np.float32).reshape(-1).tolist())
        return self._take()

    def input_finished(self) -> torch.Tensor:
        self._fbank.input_finished()
        return self._take()

    def _take(self) -> torch.Tensor:
        ready = self._fbank.num_frames_ready  # counts popped frames too
        new = range(self.num_frames_emitted, ready)
        frames = np.array([self._fbank.get_frame(i) for i in new], dtype=np.float32).reshape(len(new), NUM_MEL_BINS)
        self._fbank.pop(len(new))
        self.num_frames_emitted = ready
        return torch.from_numpy(frames)
