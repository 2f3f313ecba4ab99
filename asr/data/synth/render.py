"""Rendering: a synthesizer's audio (espeak-ng, flite or festival) trimmed, resampled to 16000 Hz, padded
with silence, mixed with noise and scaled to its peak level."""

from __future__ import annotations

import functools
import math

import numpy as np

from asr.data.synth.espeak import ESPEAK_SAMPLE_RATE_HZ, engine
from asr.data.synth.festival import synthesize_festival
from asr.data.synth.flite import synthesize_flite
from asr.data.synth.plan import NOISE_STREAM, Utterance, utterance_rng
from asr.frontend import SAMPLE_RATE_HZ

_LOWPASS_ZERO_CROSSINGS = 6
_ROLLOFF = 0.99


@functools.cache
def _resample_kernel(orig: int, new: int) -> tuple[np.ndarray, int]:
    """Polyphase windowed-sinc kernel for orig -> new (both divided by their gcd; 22050 -> 16000 is
    441 -> 320): (new phases, orig + 2 * width taps) and the half-width in taps.

    The design of torchaudio.functional.resample (method "sinc_interp_hann"): a sinc low-pass at
    0.99 x the lower Nyquist rate, 6 zero crossings each side, Hann window. Built once per rate pair
    instead of on every call, where it costs more than the filtering itself.
    """
    base_freq = min(orig, new) * _ROLLOFF  # cutoff, in units of sample_rate / gcd
    width = math.ceil(_LOWPASS_ZERO_CROSSINGS * orig / base_freq)
    taps = np.arange(-width, width + orig, dtype=np.float64) / orig  # (orig + 2w,)
    phases = -np.arange(new, dtype=np.float64)[:, None] / new  # (new, 1)
    t = np.clip((phases + taps[None, :]) * base_freq, -_LOWPASS_ZERO_CROSSINGS, _LOWPASS_ZERO_CROSSINGS)
    window = np.cos(t * math.pi / _LOWPASS_ZERO_CROSSINGS / 2) ** 2
    t = t * math.pi
    sinc = np.where(t == 0, 1.0, np.sin(t) / np.where(t == 0, 1.0, t))
    return sinc * window * (base_freq / orig), width  # (new, orig + 2w)


def resample_to_16000(x: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """Resample a float64 waveform (T,) from ``sample_rate_hz`` (a synthesizer's rate: 22050, 32000,
    16000) to 16000 Hz: (ceil(T * 16000 / sample_rate_hz),).

    Equals torchaudio.functional.resample(x, sample_rate_hz, 16000) to float64 rounding (see the tests);
    done in float64 NumPy so results do not depend on torch's thread count and the workers need no
    torch. Meant for the small rate ratios of synthesizers: the kernel grows with the reduced ratio.
    """
    if sample_rate_hz == SAMPLE_RATE_HZ:
        return x
    g = math.gcd(sample_rate_hz, SAMPLE_RATE_HZ)
    orig, new = sample_rate_hz // g, SAMPLE_RATE_HZ // g
    kernel, width = _resample_kernel(orig, new)
    num_in = x.shape[0]
    # Pad width before and width + orig after, so that every output sample has its full window and the
    # last partial block of orig inputs still yields its outputs (same padding as torchaudio).
    padded = np.concatenate([np.zeros(width), x, np.zeros(width + orig)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, kernel.shape[1])[::orig]  # (F, orig+2w)
    # einsum's own loop rather than BLAS matmul: single-threaded on purpose, since parallelism comes
    # from worker processes and a threaded BLAS fighting them was 20x slower on a 2-core machine.
    out = np.einsum("fk,pk->fp", frames, kernel).reshape(-1)  # (F, new) -> (F * new,)
    return out[: math.ceil(new * num_in / orig)]


def _pink(white: np.ndarray) -> np.ndarray:
    """Shape white noise to a 1/f power spectrum (flat below 50 Hz so it does not blow up at DC)."""
    spectrum = np.fft.rfft(white)
    freqs_hz = np.fft.rfftfreq(white.size, d=1.0 / SAMPLE_RATE_HZ)
    spectrum /= np.sqrt(np.maximum(freqs_hz, 50.0) / 50.0)  # amplitude ~ f^-1/2 -> power ~ 1/f
    return np.fft.irfft(spectrum, n=white.size)


def _speech(utt: Utterance, samples: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """A synthesizer's int16 output -> float64 speech at 16 kHz, its own leading and trailing silence cut."""
    # Trim the synthesizer's silence (espeak-ng's is exact zeros plus echo tails) so that our random
    # padding alone sets the leading/trailing silence. 16/32768 is about -66 dBFS.
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 16)
    if loud.size == 0:
        raise RuntimeError(f"{utt.language}+{utt.variant} produced silence for {utt.spoken!r}")
    samples = samples[loud[0] : loud[-1] + 1]
    # Read as if recorded at formant_scale x its rate: every frequency scales by formant_scale.
    return resample_to_16000(samples.astype(np.float64) / 32768.0, round(sample_rate_hz * utt.formant_scale))


def _duration_stretch(utt: Utterance) -> float:
    """flite's and festival's rate setting for the utterance's words per minute (their voices speak at
    about espeak-ng's default of 175)."""
    return 175.0 / utt.rate_wpm


def _synthesize(utt: Utterance) -> tuple[np.ndarray, int]:
    """(int16 samples, sample rate) of one espeak-ng or flite utterance (festival goes by batches)."""
    if utt.language == "flite":
        # pitch 25-75 -> 0.84-1.19 x the voice's own f0
        return synthesize_flite(utt.spoken, utt.variant, _duration_stretch(utt), 2.0 ** ((utt.pitch - 50) / 100))
    raw = engine().synthesize(
        utt.spoken, utt.language, utt.variant, utt.rate_wpm, utt.pitch, utt.pitch_span, utt.espeak_seed
    )
    return raw, ESPEAK_SAMPLE_RATE_HZ


def render_utterances(utts: list[Utterance], seed: int) -> list[np.ndarray]:
    """Synthesize and degrade utterances; returns int16 samples at 16 kHz for each. The festival ones
    are synthesized in one festival run."""
    festival = [utt for utt in utts if utt.language == "festival"]
    festival_audio = iter(synthesize_festival([(utt.spoken, utt.variant, _duration_stretch(utt)) for utt in festival]))
    out = []
    for utt in utts:
        samples, rate = next(festival_audio) if utt.language == "festival" else _synthesize(utt)
        out.append(_degrade(utt, seed, _speech(utt, samples, rate)))
    return out


def render_utterance(utt: Utterance, seed: int) -> np.ndarray:
    """Synthesize and degrade one utterance; returns int16 samples at 16 kHz."""
    return render_utterances([utt], seed)[0]


def _degrade(utt: Utterance, seed: int, speech: np.ndarray) -> np.ndarray:
    """Pad with silence, add noise, scale to the peak level: int16 samples."""
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
