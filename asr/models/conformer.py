"""Streaming Conformer encoder (Gulati et al., "Conformer: Convolution-augmented Transformer for
Speech Recognition", Interspeech 2020) with chunk-wise attention and dynamic chunk training (Zhang
et al., "Unified streaming and non-streaming two-pass end-to-end model", WeNet 2020), in the shape
icefall's streaming conformer ships.

Input normalisation -> conv subsampling x4 (``asr.modules.subsampling``) -> linear to ``d_model``
-> ``num_layers`` x ConformerBlock -> output of size ``d_model``.

ConformerBlock (macaron): x + 1/2 FFN(x) -> x + MHSA(x) -> x + Conv(x) -> x + 1/2 FFN(x) -> LayerNorm.
- MHSA: pre-norm, relative positions as Transformer-XL (Dai et al. 2019, as the Conformer paper):
  score(i, j) = (q_i + u) . k_j + (q_i + v) . W_pos p(i - j), p = sinusoidal code of the distance.
  Scores depend only on i - j, so a chunk attending to a cache scores exactly as the full forward.
- Conv module: pre-norm, pointwise conv to 2 x d + GLU, *causal* depthwise conv (kernel K, left
  padding K - 1), LayerNorm (not BatchNorm: no train/inference or padding mismatch), Swish, pointwise.
- Attention mask (chunk-wise): frames are grouped in chunks of C encoder frames; a frame sees every
  frame of its own chunk and of earlier chunks back to ``left_context_encoder_frames`` frames before
  its chunk's start, and no padding. Training draws C per batch from ``train_chunk_encoder_frames``
  (dynamic chunk training), so one model serves several latencies; ``chunk_encoder_frames`` is the
  decoding chunk. C = 0 means full context (every frame sees the whole utterance, left context unlimited): a
  non-streaming pass, e.g. for the reference alignments of ``asr.decoding.align``.

Shape legend: N batch, T input frames, T' = ((T - 3) // 2 - 1) // 2 encoder frames, F mel bins,
D = d_model, H heads, L = ``left_context_encoder_frames``, C chunk (encoder frames), K conv kernel,
B = ``num_layers``.

Streaming: ``streaming_forward`` takes one chunk of 4C + 5 feature frames (C outputs; the 5 overlap
frames are the subsampling's, see ``asr.modules.subsampling``) and the state
    (cached_key (B, N, L, D), cached_val (B, N, L, D), cached_conv (B, N, D, K - 1), processed (N,))
holding, per layer, the attention keys/values of the last L frames, the conv module's last K - 1
inputs, and how many encoder frames each stream has produced (cache entries before the start of
the stream are masked). Chunk-by-chunk output equals ``forward`` with the same chunk size (tested,
atol 1e-5).

Latency: a frame waits for the end of its chunk, so the algorithmic latency is the chunk
(C x 40 ms) plus the subsampling's lookahead (the last output frame of a chunk needs 5 feature frames
past the chunk: 50 ms); see ``algorithmic_latency_ms`` and ``asr.chunking``. The encoder streams
exactly only at its own chunk: ``required_chunk_encoder_frames``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from asr.chunking import ENCODER_FRAME_MS, Chunking
from asr.diagnostics import attention_entropy
from asr.bounds import DROPOUT, KERNEL, LAYERS, WIDTH, Range, check_bounds
from asr.errors import UserError
from asr.modules.normalize import GlobalCMVN
from asr.modules.pointwise import Pointwise
from asr.modules.subsampling import Conv2dSubsampling

NEG_INF = -1e4  # masked attention score (finite, so fully masked rows give a uniform softmax, not NaN)


@dataclass
class ConformerEncoderConfig:
    type: str = "conformer"
    num_layers: int = 6
    d_model: int = 144
    num_heads: int = 4
    ffn_dim: int = 576
    conv_kernel: int = 15  # causal depthwise conv, encoder frames
    chunk_encoder_frames: int = 16  # decoding chunk (x 40 ms = 640 ms); 0 = full context
    left_context_encoder_frames: int = 64  # attention history (x 40 ms = 2.56 s)
    train_chunk_encoder_frames: tuple = (4, 8, 16, 32)  # dynamic chunk training: one drawn per batch (0 = full context)
    subsampling_channels: int = 64
    dropout: float = 0.1
    # The last linear map of every residual branch (attention output, feed-forward output, conv module
    # output) starts scaled by this: 0 starts each block as its output LayerNorm of the input, every
    # branch adding nothing (ReZero's idea, Bachlechner et al. 2020; icefall's
    # ScaledLinear(initial_scale=0.25) does it more mildly). Why: recipes/synth/RESULTS.md.
    branch_init_scale: float = 1.0

    # chunks and context in encoder frames of 40 ms (chunk 0 = full context); 25000 frames = 1000 s
    BOUNDS = {"num_layers": LAYERS, "d_model": WIDTH, "num_heads": Range(1, 256), "ffn_dim": WIDTH, "conv_kernel": KERNEL,
              "chunk_encoder_frames": Range(0, 25000), "left_context_encoder_frames": Range(0, 25000),
              "train_chunk_encoder_frames": Range(0, 25000), "subsampling_channels": WIDTH, "dropout": DROPOUT,
              "branch_init_scale": Range(0, 1)}

    def __post_init__(self):
        check_bounds(self, "model.encoder")
        self.train_chunk_encoder_frames = tuple(int(c) for c in self.train_chunk_encoder_frames)
        if self.d_model % self.num_heads or self.d_model % 2:
            raise UserError(f"model.encoder.d_model={self.d_model}: must be even and divisible by num_heads={self.num_heads}")
        if not self.train_chunk_encoder_frames:
            raise UserError("model.encoder.train_chunk_encoder_frames=[]: give at least one chunk size, e.g. [8] (0 = full context)")

    @property
    def chunk_ms(self) -> int:
        return self.chunk_encoder_frames * ENCODER_FRAME_MS

    @property
    def left_context_ms(self) -> int:
        return self.left_context_encoder_frames * ENCODER_FRAME_MS


def rel_positions(d_model: int, distances: torch.Tensor) -> torch.Tensor:
    """Sinusoidal codes of (signed) distances: (R,) -> (R, D)."""
    half = torch.arange(0, d_model, 2, dtype=torch.float32, device=distances.device)
    freq = torch.exp(-math.log(10000.0) * half / d_model)  # (D/2,)
    angle = distances.to(torch.float32).unsqueeze(1) * freq  # (R, D/2)
    return torch.stack([angle.sin(), angle.cos()], dim=2).flatten(1)  # (R, D) interleaved sin, cos


class RelPositionAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.h, self.dk = num_heads, d_model // num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.pos = nn.Linear(d_model, d_model, bias=False)
        self.bias_u = nn.Parameter(torch.zeros(num_heads, self.dk))
        self.bias_v = nn.Parameter(torch.zeros(num_heads, self.dk))
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.record_entropy = False  # asr.diagnostics: keep the last forward's attention entropy
        self.entropy: float | None = None

    def project(self, x: torch.Tensor):
        """(N, T, D) -> q, k, v, each (N, T, D)."""
        return self.qkv(x).chunk(3, dim=-1)

    def attend(self, q, k, v, offset: int, mask: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """q (N, Tq, D) at positions offset + [0, Tq), k, v (N, Tk, D) at positions [0, Tk);
        mask (N, Tq, Tk) True = may attend -> (N, Tq, D). ``weights`` (N, Tq, Tk), optional: the softmax
        over the allowed keys is multiplied by them and renormalised (ANCAT's straight-through mask,
        ``asr.models.ancat``: with 0/1 weights it equals masking the zeros as well; every query must have
        a key of weight 1, as its own frame has)."""
        n, tq, d = q.shape
        tk = k.size(1)
        q = q.view(n, tq, self.h, self.dk).transpose(1, 2)  # (N, H, Tq, dk)
        k = k.view(n, tk, self.h, self.dk).transpose(1, 2)
        v = v.view(n, tk, self.h, self.dk).transpose(1, 2)
        # distances i - j from the smallest to the largest: offset - (Tk - 1) .. offset + Tq - 1
        lo = offset - (tk - 1)
        dist = torch.arange(lo, offset + tq, device=q.device)  # (R,), R = Tq + Tk - 1
        p = self.pos(rel_positions(self.h * self.dk, dist)).view(-1, self.h, self.dk).transpose(0, 1)  # (H, R, dk)
        ac = torch.matmul(q + self.bias_u.unsqueeze(1), k.transpose(2, 3))  # (N, H, Tq, Tk)
        bd = torch.matmul(q + self.bias_v.unsqueeze(1), p.transpose(1, 2))  # (N, H, Tq, R)
        index = (offset + torch.arange(tq, device=q.device).view(tq, 1)) - torch.arange(tk, device=q.device).view(1, tk) - lo
        bd = torch.gather(bd, 3, index.expand(n, self.h, tq, tk))  # (N, H, Tq, Tk)
        scores = (ac + bd) / math.sqrt(self.dk)
        scores = scores.masked_fill(~mask.unsqueeze(1), NEG_INF)
        if weights is None:
            attn = torch.softmax(scores, dim=-1)
        else:
            # exp(s - m) w / sum(exp(s - m) w), m the largest score with weight 1: the denominator is >= 1 and
            # the weight-0 terms are exactly 0 (their exponent capped, so 0 x inf cannot happen)
            on = (weights > 0.5).unsqueeze(1) & mask.unsqueeze(1)
            top = scores.masked_fill(~on, float("-inf")).amax(dim=-1, keepdim=True)  # finite: each row has one
            e = torch.exp((scores - top).clamp(max=30.0)) * weights.unsqueeze(1)
            attn = e / e.sum(dim=-1, keepdim=True)
        if self.record_entropy:
            with torch.no_grad():
                self.entropy = attention_entropy(attn, mask)
        attn = self.dropout(attn)
        return self.out(torch.matmul(attn, v).transpose(1, 2).reshape(n, tq, self.h * self.dk))


class ConvModule(nn.Module):
    def __init__(self, d_model: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.pointwise1 = Pointwise(d_model, 2 * d_model)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel, groups=d_model)
        self.norm = nn.LayerNorm(d_model)
        self.pointwise2 = Pointwise(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.cache_frames = kernel - 1

    def forward(self, x: torch.Tensor, cache: torch.Tensor, valid: torch.Tensor):
        """x (N, T, D), cache (N, D, K - 1) = the previous GLU outputs, valid (N, T) -> (N, T, D), new cache."""
        y = F.glu(self.pointwise1(x), dim=2) * valid.unsqueeze(2)  # (N, T, D); padding frames hold zeros, as in the streaming cache
        y = torch.cat([cache, y.transpose(1, 2)], dim=2)  # (N, D, K - 1 + T)
        new_cache = y[:, :, y.size(2) - self.cache_frames :]
        y = self.depthwise(y).transpose(1, 2)  # (N, T, D): causal
        return self.dropout(self.pointwise2(F.silu(self.norm(y)))), new_cache


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, ffn_dim: int, dropout: float) -> None:
        super().__init__(
            nn.LayerNorm(d_model), nn.Linear(d_model, ffn_dim), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(ffn_dim, d_model), nn.Dropout(dropout),
        )


class ConformerBlock(nn.Module):
    def __init__(self, cfg: ConformerEncoderConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.ff1 = FeedForward(d, cfg.ffn_dim, cfg.dropout)
        self.attn_norm = nn.LayerNorm(d)
        self.attn = RelPositionAttention(d, cfg.num_heads, cfg.dropout)
        self.attn_dropout = nn.Dropout(cfg.dropout)
        self.conv_norm = nn.LayerNorm(d)
        self.conv = ConvModule(d, cfg.conv_kernel, cfg.dropout)
        self.ff2 = FeedForward(d, cfg.ffn_dim, cfg.dropout)
        self.out_norm = nn.LayerNorm(d)

    def forward(self, x, key_cache, val_cache, conv_cache, offset, mask, valid, weights=None):
        """x (N, T, D); caches (N, L, D), (N, L, D), (N, D, K-1); keys are [cache, x] at positions
        [0, L + T) and queries sit at ``offset`` = L. -> x, new key/val (N, L + T, D), new conv cache.
        ``weights``: the attention's multiplicative mask (``RelPositionAttention.attend``)."""
        x = x + 0.5 * self.ff1(x)
        q, k, v = self.attn.project(self.attn_norm(x))
        k, v = torch.cat([key_cache, k], dim=1), torch.cat([val_cache, v], dim=1)
        x = x + self.attn_dropout(self.attn.attend(q, k, v, offset, mask, weights))
        y, conv_cache = self.conv(self.conv_norm(x), conv_cache, valid)
        x = x + y
        x = x + 0.5 * self.ff2(x)
        return self.out_norm(x), k, v, conv_cache


@torch.no_grad()
def scale_branches(layers, scale: float) -> None:
    """Scale the last linear map of every residual branch of ``layers`` (ConformerBlocks): attention output,
    both feed-forward outputs, the conv module's output (``branch_init_scale``)."""
    if scale == 1.0:
        return
    for layer in layers:
        for last in (layer.attn.out, layer.ff1[4], layer.ff2[4], layer.conv.pointwise2):
            last.weight.mul_(scale)
            last.bias.mul_(scale)


class ConformerEncoder(nn.Module):
    def __init__(self, num_mel_bins: int, cfg: ConformerEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.normalize = GlobalCMVN(num_mel_bins)
        self.subsampling = Conv2dSubsampling(num_mel_bins, cfg.d_model, cfg.subsampling_channels)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.num_layers))
        self.output_dim = cfg.d_model
        scale_branches(self.layers, cfg.branch_init_scale)

    @property
    def required_chunk_encoder_frames(self) -> int:
        """The only chunk it streams at exactly (its chunk-masked forward); 0: full context, no streaming."""
        return self.cfg.chunk_encoder_frames

    def algorithmic_latency_ms(self, chunk_encoder_frames: int | None = None) -> int:
        """Chunk + the subsampling's lookahead (5 feature frames), in ms."""
        return Chunking.from_encoder_frames(chunk_encoder_frames or self.cfg.chunk_encoder_frames).algorithmic_latency_ms

    def init_state(self, batch: int, device: torch.device | str = "cpu"):
        """Zero state ``(cached_key, cached_val, cached_conv, processed)``, see the module docstring."""
        c, b = self.cfg, len(self.layers)
        key = torch.zeros(b, batch, c.left_context_encoder_frames, c.d_model, device=device)
        conv = torch.zeros(b, batch, c.d_model, c.conv_kernel - 1, device=device)
        return key, key.clone(), conv, torch.zeros(batch, dtype=torch.long, device=device)

    def chunk_mask(self, t: int, lens: torch.Tensor, chunk: int) -> torch.Tensor:
        """(N, T, T) True where frame i may attend to frame j (chunk-wise, left context, no padding)."""
        idx = torch.arange(t, device=lens.device)
        start = idx // chunk * chunk  # (T,) first frame of each frame's chunk
        left = self.cfg.left_context_encoder_frames
        allowed = (idx.view(1, t) < (start + chunk).view(t, 1)) & (idx.view(1, t) >= (start - left).view(t, 1))
        return allowed.unsqueeze(0) & (idx.view(1, 1, t) < lens.view(-1, 1, 1))

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor,
                chunk_encoder_frames: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, T, F), x_lens: (N,) -> (N, T', D), (N,). The chunk is ``chunk_encoder_frames`` (0: full
        context), else a random ``train_chunk_encoder_frames`` entry in training, else the config's."""
        chunk = chunk_encoder_frames
        if chunk is None:
            if self.training:
                sizes = self.cfg.train_chunk_encoder_frames
                chunk = sizes[int(torch.randint(len(sizes), (1,)))]
            else:
                chunk = self.cfg.chunk_encoder_frames
        x, lens = self.subsampling(self.normalize(x), x_lens)  # (N, T', D)
        n, t, d = x.shape
        if t == 0:
            return x, lens
        x = self.dropout(x)
        if chunk > 0:
            mask = self.chunk_mask(t, lens, chunk)  # (N, T', T')
        else:  # full context
            mask = (torch.arange(t, device=x.device).view(1, 1, t) < lens.view(-1, 1, 1)).expand(n, t, t)
        valid = (torch.arange(t, device=x.device).view(1, t) < lens.view(-1, 1)).to(x.dtype)
        empty = x.new_zeros(n, 0, d)
        conv0 = x.new_zeros(n, d, self.cfg.conv_kernel - 1)
        for layer in self.layers:
            x, _, _, _ = layer(x, empty, empty, conv0, 0, mask, valid)
        return x, lens

    def streaming_forward(self, x: torch.Tensor, x_lens: torch.Tensor, state):
        """One chunk. x: (N, 4C + 5, F) including the 5 overlap frames -> (N, C, D), lengths, new state."""
        key_cache, val_cache, conv_cache, processed = state
        x, lens = self.subsampling(self.normalize(x), x_lens)  # (N, C, D)
        n, t, d = x.shape
        if t == 0:
            return x, lens, state
        ctx = self.cfg.left_context_encoder_frames
        # keys: [cache (L), chunk (C)]; cache slot j holds frame processed - L + j (absent if < 0)
        slot = torch.arange(ctx, device=x.device).view(1, ctx)
        cache_ok = slot >= (ctx - processed).view(-1, 1)  # (N, L)
        chunk_ok = torch.arange(t, device=x.device).view(1, t) < lens.view(-1, 1)  # (N, C)
        mask = torch.cat([cache_ok, chunk_ok], dim=1).unsqueeze(1).expand(n, t, ctx + t)
        valid = chunk_ok.to(x.dtype)
        keys, vals, convs = [], [], []
        for i, layer in enumerate(self.layers):
            x, k, v, conv = layer(x, key_cache[i], val_cache[i], conv_cache[i], ctx, mask, valid)
            keys.append(k[:, k.size(1) - ctx :])
            vals.append(v[:, v.size(1) - ctx :])
            convs.append(conv)
        return x, lens, (torch.stack(keys), torch.stack(vals), torch.stack(convs), processed + lens)
