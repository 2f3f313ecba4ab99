"""Augmentation of cached log-mel features, drawn from one generator (so a resumed run draws the same):
vocal-tract-length perturbation, a random gain and SpecAugment masks (Park et al., "SpecAugment",
Interspeech 2019). Speed perturbation changes the audio, so it happens when the features are computed
(``asr.data.fbank``).

Shape legend: N batch, T frames, F mel bins.
"""

from __future__ import annotations

import math

import torch

from asr.frontend import HIGH_FREQ_HZ, LOW_FREQ_HZ, SAMPLE_RATE_HZ


def mel_bin_positions(f: int, alpha: torch.Tensor) -> torch.Tensor:
    """(N,) warp factors -> (N, F) fractional mel-bin index whose frequency times alpha is bin k's.

    Bin centres are those of our fbank (``asr.features``: 20 Hz to 8000 - 400 Hz, mel = 1127 ln(1 + hz / 700))."""

    def mel(hz):
        return 1127.0 * torch.log1p(hz / 700.0)

    lo, hi = mel(torch.tensor(LOW_FREQ_HZ)), mel(torch.tensor(SAMPLE_RATE_HZ / 2 + HIGH_FREQ_HZ))
    step = (hi - lo) / (f + 1)
    centre_mel = lo + step * torch.arange(1, f + 1, dtype=torch.float32)  # (F,)
    centre_hz = 700.0 * torch.expm1(centre_mel / 1127.0)
    source_hz = centre_hz.view(1, f) / alpha.view(-1, 1)  # (N, F)
    return ((mel(source_hz) - lo) / step - 1).clamp(0, f - 1)


def augment(batch: dict, data_cfg, gen: torch.Generator) -> torch.Tensor:
    """Frequency warping, a random gain and SpecAugment masks on the (N, T, F) features ``batch["x"]``,
    as ``data_cfg`` (an ``asr.config.DataConfig``) sets them, drawn from ``gen`` only."""
    x, x_lens, d = batch["x"].clone(), batch["x_lens"], data_cfg
    n, t, f = x.shape
    if d.freq_warp > 0:
        # Vocal-tract-length perturbation on the log-mel features: every utterance's spectrum is
        # stretched in Hz by alpha, log-uniform in [1 / (1 + w), 1 + w], i.e. all formants move by
        # the same factor, as between speakers (Jaitly & Hinton 2013; here by interpolating bins).
        alpha = torch.exp((torch.rand(n, generator=gen) * 2 - 1) * math.log1p(d.freq_warp))
        pos = mel_bin_positions(f, alpha)  # (N, F)
        low = pos.floor().long()
        high = (low + 1).clamp(max=f - 1)
        frac = (pos - low).view(n, 1, f).to(x.dtype)
        x = torch.gather(x, 2, low.view(n, 1, f).expand(n, t, f)) * (1 - frac) + torch.gather(x, 2, high.view(n, 1, f).expand(n, t, f)) * frac
    if d.volume_perturb_db > 0:
        db = (torch.rand(n, generator=gen) * 2 - 1) * d.volume_perturb_db
        x += (db * math.log(10) / 10).view(n, 1, 1)  # gain g: log-mel + 2 ln g, 2 ln g = dB * ln(10) / 10
    if d.spec_augment:
        for i in range(n):
            length = int(x_lens[i])
            fill = x[i, :length].mean()
            for _ in range(d.freq_masks):
                width = int(torch.randint(0, d.freq_mask_bins + 1, (1,), generator=gen))
                start = int(torch.randint(0, f - width + 1, (1,), generator=gen))
                x[i, :length, start : start + width] = fill
            max_width = max(1, int(d.time_mask_ratio * length))
            for _ in range(d.time_masks):
                width = int(torch.randint(0, max_width + 1, (1,), generator=gen))
                start = int(torch.randint(0, max(1, length - width + 1), (1,), generator=gen))
                x[i, start : start + width] = fill
    return x
