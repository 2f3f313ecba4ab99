"""Streaming fbank == offline fbank, and the front end matches the sherpa-onnx options."""

import pytest
import torch

from asr.features import StreamingFbank, fbank, num_frames
from asr.frontend import NUM_MEL_BINS

ATOL = 1e-5


def _fed_in_random_pieces(fb, samples: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The features of ``samples`` fed to the streaming front end ``fb`` in pieces of 1 to 899 samples."""
    parts, start = [], 0
    while start < samples.numel():
        size = int(torch.randint(1, 900, (1,), generator=g))
        parts.append(fb.accept_waveform(samples[start : start + size]))
        start += size
    parts.append(fb.input_finished())
    return torch.cat(parts)


@pytest.mark.parametrize("num_samples", [0, 1, 79, 80, 119, 120, 200, 280, 399, 400, 401, 1000, 16000, 16123, 48017])
def test_streaming_equals_offline(num_samples):
    g = torch.Generator().manual_seed(num_samples)
    samples = torch.randn(num_samples, generator=g) * 0.1
    offline = fbank(samples)
    assert offline.shape == (num_frames(num_samples), NUM_MEL_BINS)
    for trial in range(4):
        streamed = _fed_in_random_pieces(StreamingFbank(), samples, g)
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


# kaldi-native-fbank computes the same features in a different float order; 6.5e-4 was measured on
# a 3.2 s chirp, log-mel values are about -15 .. 15
KNF_ATOL = 1e-3


@pytest.mark.parametrize("num_samples", [400, 1000, 16000, 48017])
def test_sherpa_fbank_streams_and_matches_ours(num_samples):
    """SherpaFbank (kaldi-native-fbank, sherpa-onnx's front end): any chunking gives the same frames,
    and they equal :func:`fbank` up to float rounding."""
    from asr.features import SherpaFbank

    g = torch.Generator().manual_seed(num_samples)
    t = torch.arange(num_samples) / 16000
    samples = 0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.05 * torch.randn(num_samples, generator=g)
    whole = SherpaFbank()
    ref = torch.cat([whole.accept_waveform(samples), whole.input_finished()])
    assert ref.shape == (num_frames(num_samples), NUM_MEL_BINS)
    assert torch.equal(_fed_in_random_pieces(SherpaFbank(), samples, g), ref)
    diff = (ref - fbank(samples)).abs().max().item()
    assert diff <= KNF_ATOL, f"kaldi-native-fbank vs torchaudio fbank max |diff| {diff:.3e} > {KNF_ATOL}"
