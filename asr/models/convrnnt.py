"""ConvRNN-T encoder: Radfar et al., "ConvRNN-T: Convolutional Augmented Recurrent Neural Network
Transducers for Streaming Speech Recognition", Interspeech 2022 (arXiv 2209.14868). Layer shapes
follow a public third-party re-implementation on icefall's ``EncoderInterface`` (not the authors'
code): the conv subsampling before the CNN encoders, the local and global CNN shapes.

Input normalisation -> conv subsampling x4 to ``d_model`` = C -> two causal CNN encoders in parallel:
- local: 4 Conv2d layers over the (time, channel) plane, kernel ``local_kernel`` (5x5), causal in
  time (left padding k - 1), 'same' on the channel axis, SiLU after each, then a 1x1 Conv2d to one
  plane: (N, T', C) -> (N, T', C);
- global: ``global_blocks`` (6) residual blocks, block i = 1..6: pointwise (1x1, a Linear) C -> 2C, GLU,
  LayerNorm; causal depthwise Conv1d (kernel 3, dilation 2^i); SiLU, LayerNorm; pointwise C -> C;
  squeeze-and-excitation whose squeeze is the *causal running mean over time* (frames 0..t), FC
  (C -> C / 16), ReLU, FC, sigmoid, channel scaling; dropout; residual add;
then concat(local, global) (2C) -> Linear to C -> the residual LSTM stack of ``asr.models.lstm``.

Reconstructed choices (the paper's sizes were not found): LayerNorm for every "norm" (streaming needs
no batch statistics), SiLU activations, local channels configurable (the re-implementation's
(100, 100, 64, 64) costs ~100 M MACs per frame at C = 256; the small presets use fewer).

Receptive field, in encoder frames of 40 ms: the local CNN sees 4 x (k - 1) = 16 frames back
(640 ms); the global convolutions 2 x (2 + 4 + ... + 64) = 252 frames back, i.e. 253 frames (10.1 s)
including the current one; the squeeze-and-excitation mean sees the whole past. Nothing looks ahead:
the encoder is causal after the subsampling, whose lookahead is 5 feature frames (50 ms), so the
algorithmic latency is the decoding chunk plus 50 ms.

Shape legend: N batch, T input frames, T' encoder frames, F mel bins, C = d_model, B global blocks.

Streaming state (all zeros at the start), a flat tuple:
    h (L, N, P), c (L, N, H)                 the LSTM stack's state
    local_cache_i (N, C_in_i, k - 1, C)      per local conv layer: its last k - 1 input frames
    global_cache (N, C, sum_i 2 * 2^i)       per global block: its last 2 * 2^i depthwise inputs
    se_sum (B, N, C), processed (N,)          running sums of the SE squeeze and the frame count
Chunk-by-chunk output equals the full forward (tested, atol 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from asr.bounds import DROPOUT, KERNEL, LAYERS, WIDTH, Range, check_bounds
from asr.errors import UserError
from asr.models.lstm import LSTMStack
from asr.modules.normalize import GlobalCMVN
from asr.modules.pointwise import Pointwise
from asr.modules.subsampling import Conv2dSubsampling


@dataclass
class ConvRNNTEncoderConfig:
    type: str = "convrnnt"
    d_model: int = 256
    local_channels: tuple = (16, 16, 16, 16)
    local_kernel: int = 5
    global_blocks: int = 6
    global_kernel: int = 3
    se_reduction: int = 16  # 0 = no squeeze-and-excitation
    num_layers: int = 2  # LSTM layers
    hidden_dim: int = 320
    proj_dim: int = 0
    subsampling_channels: int = 64
    dropout: float = 0.1
    # The last pointwise conv of every global block (its residual branch) starts scaled by this: 0
    # starts each block as the identity (as the Conformer's branch_init_scale).
    branch_init_scale: float = 1.0

    BOUNDS = {"d_model": WIDTH, "local_channels": Range(1, 1024), "local_kernel": KERNEL, "global_blocks": Range(0, 64),
              "global_kernel": KERNEL, "se_reduction": Range(0, WIDTH.high), "num_layers": LAYERS, "hidden_dim": WIDTH,
              "proj_dim": Range(0, WIDTH.high), "subsampling_channels": WIDTH, "dropout": DROPOUT,
              "branch_init_scale": Range(0, 1)}

    def __post_init__(self):
        check_bounds(self, "model.encoder")
        self.local_channels = tuple(int(c) for c in self.local_channels)
        if self.se_reduction > self.d_model:
            raise UserError(f"model.encoder.se_reduction={self.se_reduction}: must be 0 (off) or at most d_model={self.d_model}")
        if self.proj_dim < 0 or self.proj_dim >= self.hidden_dim:
            raise UserError(f"model.encoder.proj_dim={self.proj_dim}: must be 0 or less than hidden_dim={self.hidden_dim}")


class LocalCNN(nn.Module):
    """Causal 2-D CNN over (time, channel): (N, T, C) + caches -> (N, T, C), new caches."""

    def __init__(self, channels: tuple, kernel: int) -> None:
        super().__init__()
        chans = (1, *channels)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, kernel, padding=(0, kernel // 2)) for a, b in zip(chans, chans[1:]))
        self.merge = nn.Conv2d(chans[-1], 1, 1)
        self.pad = kernel - 1
        self.in_channels = chans[:-1]

    def forward(self, x: torch.Tensor, caches: list[torch.Tensor]):
        y = x.unsqueeze(1)  # (N, 1, T, C)
        new = []
        for conv, cache in zip(self.convs, caches):
            y = torch.cat([cache, y], dim=2)  # (N, C_in, k - 1 + T, C)
            new.append(y[:, :, y.size(2) - self.pad :])
            y = F.silu(conv(y))
        return self.merge(y).squeeze(1), new


class GlobalBlock(nn.Module):
    def __init__(self, c: int, kernel: int, dilation: int, se_reduction: int, dropout: float) -> None:
        super().__init__()
        self.pointwise1 = Pointwise(c, 2 * c)
        self.norm1 = nn.LayerNorm(c)
        self.depthwise = nn.Conv1d(c, c, kernel, dilation=dilation, groups=c)
        self.norm2 = nn.LayerNorm(c)
        self.pointwise2 = Pointwise(c, c)
        self.se = nn.Sequential(nn.Linear(c, c // se_reduction), nn.ReLU(), nn.Linear(c // se_reduction, c), nn.Sigmoid()) if se_reduction else None
        self.dropout = nn.Dropout(dropout)
        self.pad = (kernel - 1) * dilation

    def forward(self, x, cache, se_sum, processed):
        """x (N, T, C), cache (N, C, pad), se_sum (N, C) over earlier frames, processed (N,) earlier frames."""
        y = self.norm1(F.glu(self.pointwise1(x), dim=2)).transpose(1, 2)  # (N, C, T)
        y = torch.cat([cache, y], dim=2)  # (N, C, pad + T)
        new_cache = y[:, :, y.size(2) - self.pad :]
        y = self.norm2(F.silu(self.depthwise(y)).transpose(1, 2))  # (N, T, C)
        y = self.pointwise2(y)  # (N, T, C)
        if self.se is not None:
            cum = se_sum.unsqueeze(1) + torch.cumsum(y, dim=1)  # (N, T, C) sums over frames 0..t
            count = processed.view(-1, 1, 1) + torch.arange(1, y.size(1) + 1, device=y.device).view(1, -1, 1)
            y = y * self.se(cum / count)
            se_sum = cum[:, -1]
        return x + self.dropout(y), new_cache, se_sum


class ConvRNNTEncoder(nn.Module):
    def __init__(self, num_mel_bins: int, cfg: ConvRNNTEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.d_model
        self.normalize = GlobalCMVN(num_mel_bins)
        self.subsampling = Conv2dSubsampling(num_mel_bins, c, cfg.subsampling_channels)
        self.local = LocalCNN(cfg.local_channels, cfg.local_kernel)
        self.blocks = nn.ModuleList(
            GlobalBlock(c, cfg.global_kernel, 2 ** (i + 1), cfg.se_reduction, cfg.dropout) for i in range(cfg.global_blocks)
        )
        self.fuse = nn.Linear(2 * c, c)
        self.stack = LSTMStack(c, cfg.num_layers, cfg.hidden_dim, cfg.proj_dim, cfg.dropout)
        self.output_dim = self.stack.output_dim
        self.global_pads = [b.pad for b in self.blocks]
        if cfg.branch_init_scale != 1.0:
            with torch.no_grad():
                for block in self.blocks:
                    block.pointwise2.weight.mul_(cfg.branch_init_scale)
                    block.pointwise2.bias.mul_(cfg.branch_init_scale)

    def receptive_field_frames(self) -> int:
        """Encoder frames of history the convolutions see, the current frame included (SE aside)."""
        return 1 + max(self.local.pad * len(self.local.convs), sum(self.global_pads))

    def init_state(self, batch: int, device: torch.device | str = "cpu"):
        c = self.cfg.d_model
        h, cc = self.stack.init_state(batch, device)
        local = [torch.zeros(batch, ch, self.local.pad, c, device=device) for ch in self.local.in_channels]
        glob = torch.zeros(batch, c, sum(self.global_pads), device=device)
        se_sum = torch.zeros(len(self.blocks), batch, c, device=device)
        return (h, cc, *local, glob, se_sum, torch.zeros(batch, dtype=torch.long, device=device))

    # causal after the subsampling: it streams exactly at any chunk (asr.chunking)
    required_chunk_encoder_frames = None

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor,
                chunk_encoder_frames: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, T, F), x_lens: (N,) -> (N, T', P), (N,). ``chunk_encoder_frames`` is accepted as every
        encoder takes it and changes nothing: the encoder is causal, so every chunking gives this output."""
        out, out_lens, _ = self.streaming_forward(x, x_lens, self.init_state(x.size(0), x.device))
        return out, out_lens

    def streaming_forward(self, x: torch.Tensor, x_lens: torch.Tensor, state):
        """One chunk. x: (N, 4k + 5, F) including the 5 overlap frames -> (N, k, P), lengths, new state."""
        n_local = len(self.local.convs)
        h, c, local_caches, glob, se_sum, processed = state[0], state[1], list(state[2 : 2 + n_local]), *state[2 + n_local :]
        x, lens = self.subsampling(self.normalize(x), x_lens)  # (N, T', C)
        if x.size(1) == 0:
            return x.new_zeros(x.size(0), 0, self.output_dim), lens, state
        local, local_caches = self.local(x, local_caches)
        y, new_glob, new_se, start = x, [], [], 0
        for i, block in enumerate(self.blocks):
            cache = glob[:, :, start : start + block.pad]
            start += block.pad
            y, cache, s = block(y, cache, se_sum[i], processed)
            new_glob.append(cache)
            new_se.append(s)
        out, (h, c) = self.stack(self.fuse(torch.cat([local, y], dim=2)), (h, c))
        glob = torch.cat(new_glob, dim=2) if new_glob else glob
        se_sum = torch.stack(new_se) if new_se else se_sum
        return out, lens, (h, c, *local_caches, glob, se_sum, processed + lens)
