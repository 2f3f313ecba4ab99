"""Global mean/variance normalisation of the input features, inside the model.

sherpa-onnx feeds raw log-mel features (no CMVN), so normalisation must travel with the model.
The statistics are buffers, estimated once from training features (``asr.train``) and saved in
every checkpoint; an untrained model uses mean 0 and std 1.

Shape legend: N batch, T frames, F mel bins.
"""

from __future__ import annotations

import torch
from torch import nn


class GlobalCMVN(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("inv_std", torch.ones(dim))

    @torch.no_grad()
    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.inv_std.copy_(1.0 / std.clamp(min=1e-3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, F) -> (N, T, F)"""
        return (x - self.mean) * self.inv_std
