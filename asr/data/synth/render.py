"""Rendering: espeak-ng audio trimmed, resampled 22050 -> 16000 Hz, padded with silence, mixed with
noise and scaled to its peak level."""

from __future__ import annotations

import functools
import math

import numpy as np

from asr.data.synth.espeak import engine
from asr.data.synth.plan import NOISE_STREAM, Utterance, utterance_rng
from asr.frontend import SAMPLE_RATE_HZ

# 22050 / 16000 = 441 / 320 after dividing by their gcd 50: every 441 input samples give 320 outputs.
_RESAMPLE_IN = 441
_RESAMPLE_OUT = 320
_LOWPASS_ZERO_CROSSINGS = 6
_ROLLOFF = 0.99


@functools.cache
def _resample_kernel() -> tuple[np.ndarray, int]:
    """Polyphase windowed-sinc kernel: (320 phases, 441 + 2 * width taps) and the half-width in taps.

    The design of torchaudio.functional.resample (method "sinc_interp_hann"): a sinc low-pass at
    0.99 x the lower Nyquist rate, 6 zero crossings each side, Hann window. Built once instead of on
    every call, where it costs more than the filtering itself.
    """
    base_freq = min(_RESAMPLE_IN, _RESAMPLE_OUT) * _ROLLOFF  # cutoff, in units of sample_rate / gcd
    width = math.ceil(_LOWPASS_ZERO_CROSSINGS * _RESAMPLE_IN / base_freq)  # 9 input samples
    taps = np.arange(-width, width + _RESAMPLE_IN, dtype=np.float64) / _RESAMPLE_IN  # (441 + 2w,)
    phases = -np.arange(_RESAMPLE_OUT, dtype=np.float64)[:, None] / _RESAMPLE_OUT  # (320, 1)
    t = np.clip((phases + taps[None, :]) * base_freq, -_LOWPASS_ZERO_CROSSINGS, _LOWPASS_ZERO_CROSSINGS)
    window = np.cos(t * math.pi / _LOWPASS_ZERO_CROSSINGS / 2) ** 2
    t = t * math.pi
    sinc = np.where(t == 0, 1.0, np.sin(t) / np.where(t == 0, 1.0, t))
    return sinc * window * (base_freq / _RESAMPLE_IN), width  # (320, 441 + 2w)


def resample_22050_to_16000(x: np.ndarray) -> np.ndarray:
    """Resample a float64 waveform (T,) from 22050 Hz to 16000 Hz: (ceil(T * 320 / 441),).

    Equals torchaudio.functional.resample(x, 22050, 16000) to float64 rounding (see the tests); done
    in float64 NumPy so results do not depend on torch's thread count and the workers need no torch.
    """
    kernel, width = _resample_kernel()
    num_in = x.shape[0]
    # Pad width before and width + 441 after, so that every output sample has its full window and the
    # last partial block of 441 inputs still yields its outputs (same padding as torchaudio).
    padded = np.concatenate([np.zeros(width), x, np.zeros(width + _RESAMPLE_IN)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, kernel.shape[1])[::_RESAMPLE_IN]  # (F, 441+2w)
    # einsum's own loop rather than BLAS matmul: single-threaded on purpose, since parallelism comes
    # from worker processes and a threaded BLAS fighting them was 20x slower on a 2-core machine.
    out = np.einsum("fk,pk->fp", frames, kernel).reshape(-1)  # (F, 320) -> (F * 320,)
    return out[: math.ceil(_RESAMPLE_OUT * num_in / _RESAMPLE_IN)]


def _pink(white: np.ndarray) -> np.ndarray:
    """Shape white noise to a 1/f power spectrum (flat below 50 Hz so it does not blow up at DC)."""
    spectrum = np.fft.rfft(white)
    freqs_hz = np.fft.rfftfreq(white.size, d=1.0 / SAMPLE_RATE_HZ)
    spectrum /= np.sqrt(np.maximum(freqs_hz, 50.0) / 50.0)  # amplitude ~ f^-1/2 -> power ~ 1/f
    return np.fft.irfft(spectrum, n=white.size)


def render_utterance(utt: Utterance, seed: int) -> np.ndarray:
    """Synthesize and degrade one utterance; returns int16 samples at 16 kHz."""
    raw = engine().synthesize(
        utt.spoken, utt.language, utt.variant, utt.rate_wpm, utt.pitch, utt.pitch_span, utt.espeak_seed
    )
    # Trim espeak's own silence (its output is exact zeros plus echo tails) so that our random padding
    # alone sets the leading/trailing silence. 16/32768 is about -66 dBFS.
    loud = np.flatnonzero(np.abs(raw.astype(np.int32)) > 16)
    if loud.size == 0:
        raise RuntimeError(f"espeak-ng produced silence for {utt.spoken!r} with {utt.language}+{utt.variant}")
    raw = raw[loud[0] : loud[-1] + 1]

    speech = resample_22050_to_16000(raw.astype(np.float64) / 32768.0)

    lead = int(round(utt.lead_silence_s * SAMPLE_RATE_HZ))
    trail = int(round(utt.trail_silence_s * SAMPLE_RATE_HZ))
    audio = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    if utt.snr_db is not None:
        rng = utterance_rng(seed, utt.split, utt.index, NOISE_STREAM)
        if utt.pink_noise:
            # FFT at a power-of-two length (fast for any utterance length), then cut to size.
            noise = _pink(rng.standard_normal(1 << (audio.size - 1).bit_length()))[: audio.size]
        else:
            noise = rng.standard_normal(audio.size)
        # SNR against the speech power only, not diluted by the added silence.
        speech_power = np.mean(speech**2)
        noise *= np.sqrt(speech_power / (np.mean(noise**2) * 10.0 ** (utt.snr_db / 10.0)))
        audio = audio + noise
    audio *= 10.0 ** (utt.peak_dbfs / 20.0) / np.max(np.abs(audio))
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)
