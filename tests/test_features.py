"""Streaming fbank == offline fbank, and the front end matches the sherpa-onnx options."""

import pytest
import torch

from asr.features import NUM_MEL_BINS, StreamingFbank, fbank, num_frames

ATOL = 1e-5


@pytest.mark.parametrize("num_samples", [0, 1, 79, 80, 119, 120, 200, 280, 399, 400, 401, 1000, 16000, 16123, 48017])
def test_streaming_equals_offline(num_samples):
    g = torch.Generator().manual_seed(num_samples)
    samples = torch.randn(num_samples, generator=g) * 0.1
    offline = fbank(samples)
    assert offline.shape == (num_frames(num_samples), NUM_MEL_BINS)
    for trial in range(4):
        fb, parts, start = StreamingFbank(), [], 0
        while start < num_samples:
            size = int(torch.randint(1, 900, (1,), generator=g))
            parts.append(fb.accept_waveform(samples[start : start + size]))
            start += size
        parts.append(fb.input_finished())
        streamed = torch.cat(parts)
        assert streamed.shape == offline.shape
        if offline.numel():
            diff = (streamed - offline).abs().max().item()
            assert diff <= ATOL, f"streaming vs offline max |diff| {diff:.3e} > {ATOL}"


def test_front_end_is_sherpa_onnx_kaldi_fbank():
    """kaldi fbank with snip_edges=False, low_freq=20, high_freq=-400, dither 0, samples in [-1, 1]."""
    import torchaudio.compliance.kaldi as kaldi

    samples = torch.randn(16000, generator=torch.Generator().manual_seed(0)) * 0.1
    ref = kaldi.fbank(samples[None], num_mel_bins=80, dither=0.0, snip_edges=False, low_freq=20.0,
                      high_freq=-400.0, sample_frequency=16000)
    diff = (fbank(samples) - ref).abs().max().item()
    assert diff == 0.0, f"max |diff| {diff}"
    assert fbank(samples).shape == (100, 80)  # (16000 + 80) // 160


def test_streaming_rejects_input_after_finish():
    fb = StreamingFbank()
    fb.accept_waveform(torch.zeros(1000))
    fb.input_finished()
    with pytest.raises(RuntimeError):
        fb.accept_waveform(torch.zeros(10))
