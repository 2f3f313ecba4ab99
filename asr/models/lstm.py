"""Streaming LSTM transducer encoder (RNN-T; He et al. 2019, "Streaming end-to-end speech
recognition for mobile devices"), in the shape icefall's ``lstm_transducer_stateless`` ships.

Input normalisation -> conv subsampling x4 (``asr.modules.subsampling``) -> layer norm ->
unidirectional LSTM stack (optionally with projections, LSTMP; residual connections between
layers of equal width) -> layer norm, of size ``output_dim``. The projection to
the joiner dimension lives in the joiner.

Shape legend: N batch, T input frames, T' = ((T - 3) // 2 - 1) // 2 encoder frames, F mel bins,
L LSTM layers, H LSTM hidden size, P LSTM output size (projection size, or H without one).

Streaming: the state is ``(h, c)`` with ``h: (L, N, P)`` and ``c: (L, N, H)``, zeros at the
start; this is exactly sherpa-onnx's ``model_type=lstm`` state layout (batch on axis 1). Each
chunk carries the 5 overlap frames of the previous one (``asr.chunking``), so chunk-by-chunk output
equals the full forward exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from asr.bounds import DROPOUT, LAYERS, WIDTH, Range, check_bounds
from asr.errors import UserError
from asr.modules.normalize import GlobalCMVN
from asr.modules.subsampling import Conv2dSubsampling


@dataclass
class LSTMEncoderConfig:
    type: str = "lstm"
    num_layers: int = 3
    hidden_dim: int = 512
    proj_dim: int = 256  # 0 = no projection (P = H)
    subsampling_dim: int = 256
    subsampling_channels: int = 64
    dropout: float = 0.1

    BOUNDS = {"num_layers": LAYERS, "hidden_dim": WIDTH, "proj_dim": Range(0, WIDTH.high), "subsampling_dim": WIDTH,
              "subsampling_channels": WIDTH, "dropout": DROPOUT}

    def __post_init__(self):
        check_bounds(self, "model.encoder")
        if self.proj_dim < 0 or self.proj_dim >= self.hidden_dim:
            raise UserError(f"model.encoder.proj_dim={self.proj_dim}: must be 0 or less than hidden_dim={self.hidden_dim}")


class LSTMStack(nn.Module):
    """LayerNorm -> LSTM/LSTMP layers (residual where widths match) -> LayerNorm, with state
    ``(h (L, N, P), c (L, N, H))``. Shared by the LSTM and ConvRNN-T encoders."""

    def __init__(self, in_dim: int, num_layers: int, hidden_dim: int, proj_dim: int, dropout: float) -> None:
        super().__init__()
        # Layer norms on the LSTM input and output (as torchaudio's RNN-T transcriber): at
        # initialisation an LSTM's output is ~100x smaller than the predictor's, and the joiner
        # then learns a language model long before it listens.
        self.input_norm = nn.LayerNorm(in_dim)
        self.dropout = nn.Dropout(dropout)
        # One nn.LSTM per layer so that layers can be residual: without the skip connections a
        # 3-layer stack trained from scratch sat on the "predict the prior" plateau far longer
        # (CTC probe on the mini corpus: no recognisable output after 600 steps, vs 1 layer: yes).
        self.output_dim = proj_dim or hidden_dim
        self.hidden_dim = hidden_dim
        self.layers = nn.ModuleList(
            nn.LSTM(in_dim if i == 0 else self.output_dim, hidden_dim, proj_size=proj_dim, batch_first=True)
            for i in range(num_layers)
        )
        self.output_norm = nn.LayerNorm(self.output_dim)

    def init_state(self, batch: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.zeros(len(self.layers), batch, self.output_dim, device=device)
        c = torch.zeros(len(self.layers), batch, self.hidden_dim, device=device)
        return h, c

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """x (N, T, in_dim), state -> (N, T, P), new state. Padded frames never reach valid outputs
        (the LSTM runs forward in time), so no packing is needed."""
        x = self.dropout(self.input_norm(x))
        h_in, c_in = state
        h_out, c_out = [], []
        for i, lstm in enumerate(self.layers):
            y, (h, c) = lstm(x, (h_in[i : i + 1], c_in[i : i + 1]))  # (N, T, P)
            x = self.dropout(y) + x if y.shape == x.shape else self.dropout(y)  # residual where dims match
            h_out.append(h)
            c_out.append(c)
        return self.output_norm(x), (torch.cat(h_out), torch.cat(c_out))


class LSTMEncoder(nn.Module):
    def __init__(self, num_mel_bins: int, cfg: LSTMEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.normalize = GlobalCMVN(num_mel_bins)
        self.subsampling = Conv2dSubsampling(num_mel_bins, cfg.subsampling_dim, cfg.subsampling_channels)
        self.stack = LSTMStack(cfg.subsampling_dim, cfg.num_layers, cfg.hidden_dim, cfg.proj_dim, cfg.dropout)
        self.output_dim = self.stack.output_dim

    # causal after the subsampling: it streams exactly at any chunk (asr.chunking)
    required_chunk_encoder_frames = None

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor,
                chunk_encoder_frames: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, T, F), x_lens: (N,) -> (N, T', P), (N,). ``chunk_encoder_frames`` is accepted as every
        encoder takes it and changes nothing: the encoder is causal, so every chunking gives this output."""
        out, out_lens, _ = self.streaming_forward(x, x_lens, self.init_state(x.size(0), x.device))
        return out, out_lens

    def init_state(self, batch: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Zero state ``(h: (L, N, P), c: (L, N, H))``."""
        return self.stack.init_state(batch, device)

    def streaming_forward(
        self, x: torch.Tensor, x_lens: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One chunk. x: (N, 4k + 5, F) including the 5 overlap frames -> (N, k, P), lengths, new state.

        Every row must hold a full chunk except at the end of its utterance (the new state of a
        row is taken after all k frames)."""
        x, x_lens = self.subsampling(self.normalize(x), x_lens)  # (N, T', D)
        if x.size(1) == 0:  # under 9 input frames: no output, state unchanged
            return x.new_zeros(x.size(0), 0, self.output_dim), x_lens, state
        out, state = self.stack(x, state)
        return out, x_lens, state
