"""Convolutional subsampling by 4 with icefall's ``((T - 3) // 2 - 1) // 2`` length arithmetic.

Shape legend: N batch, T input frames, T' = ((T - 3) // 2 - 1) // 2 output frames, F mel bins,
D output dim.

Three 3x3 convolutions, no padding in time:
  conv1 (stride 1):  T -> T - 2
  conv2 (stride 2):  T - 2 -> (T - 2 - 3) // 2 + 1 = (T - 3) // 2
  conv3 (stride 2):  (T - 3) // 2 -> ((T - 3) // 2 - 3) // 2 + 1 = ((T - 3) // 2 - 1) // 2
Output frame j sees input frames [4j, 4j + 8] (receptive field 9, nothing before or after), so a
chunk of 4k + 5 frames gives exactly k outputs, and chunks that advance by 4k and overlap by 9 - 4 = 5
frames (``asr.chunking.OVERLAP_FEATURE_FRAMES``) reproduce the full-utterance output exactly. This is
sherpa-onnx's ``T = decode_chunk_len + 5`` streaming contract; no cache is needed. The numbers and the
length formula are ``asr.chunking``'s (the one place that owns them); this module is built to them.
"""

from __future__ import annotations

import torch
from torch import nn

from asr.chunking import RECEPTIVE_FIELD_FEATURE_FRAMES, encoder_frames


class Conv2dSubsampling(nn.Module):

    def __init__(self, in_dim: int, out_dim: int, channels: int = 64) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3, padding=(0, 1)),
            nn.SiLU(),
            nn.Conv2d(8, channels // 2, kernel_size=3, stride=2),
            nn.SiLU(),
            nn.Conv2d(channels // 2, channels, kernel_size=3, stride=2),
            nn.SiLU(),
        )
        # frequency: F -> F (padded) -> (F - 3) // 2 + 1 -> ((F - 1) // 2 - 3) // 2 + 1
        freq = ((in_dim - 1) // 2 - 1) // 2
        self.out = nn.Linear(channels * freq, out_dim)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, T, F) -> (N, T', D), lengths (N,)."""
        if x.size(1) < RECEPTIVE_FIELD_FEATURE_FRAMES:  # too short for one output frame
            return x.new_zeros(x.size(0), 0, self.out.out_features), encoder_frames(x_lens)
        x = self.conv(x.unsqueeze(1))  # (N, 1, T, F) -> (N, C, T', F')
        n, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(n, t, c * f))  # (N, T', C * F') -> (N, T', D)
        return x, encoder_frames(x_lens)
