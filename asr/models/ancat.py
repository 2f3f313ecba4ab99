"""ANCAT: a Conformer whose attention layers learn, frame by frame, how far into the future to look
(Strimel et al., "Lookahead when it matters: adaptive non-causal transformers for streaming neural
transducers", ICML 2023, arXiv 2305.04159). The paper's equations are not all public; this is our
reading of them:

* **scheduler** (:class:`LookaheadScheduler`), one per layer: from the layer's input at frame t alone
  (so it needs no future), logits over the right context ``r in {0, ..., R}`` encoder frames. In
  training a Gumbel-softmax sample with the **straight-through** estimator: the forward pass uses the
  hard one-hot ``z`` of the noisy argmax, the backward pass the gradient of the soft sample
  (temperature ``gumbel_temperature``; the noise scaled by ``gumbel_noise``, 0 = the argmax itself,
  a deterministic straight-through estimator); in evaluation the plain argmax, no noise.
* **mask**: frame t attends to frames ``t - left .. t + r_t`` (and no padding). The straight-through
  weight of a future frame ``t + d`` is ``P(r_t >= d)``, summed from the one-hot / soft sample:
  exactly 0 or 1 forward, differentiable backward; the attention is the softmax restricted by it
  (``RelPositionAttention.attend``'s ``weights``), which forward equals the hard-masked softmax.
* **look-ahead compounds** across layers: ``D^0_t = 0``, ``D^l_t = max(D^{l-1}_t, max_{1 <= k <= r^l_t}
  (k + D^{l-1}_{t+k}))`` (frames past the end of the utterance do not exist: k stops at the last
  frame). Output frame t can be computed once input frame ``t + D^B_t`` has arrived:
  :func:`compound_lookahead`, with the one-hot choices, is that count; with the straight-through
  choices it has the same value and a gradient (the expectation of the recursion under the soft
  choices, layer by layer).
* **latency regulariser**: ``latency_weight`` x the sum over frames of ``D^B_t`` (straight-through), added
  to the transducer loss (``Transducer.forward`` adds every encoder's ``regulariser()``). The larger
  the weight, the less future the model buys.

The blocks, the relative-position attention, the causal convolution module and the subsampling are the
Conformer's (``asr.models.conformer``). Streaming inference and export are not built yet (a
``streaming_forward`` call says so).

Shape legend: N batch, T' encoder frames, D d_model, R max look-ahead per layer, B layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from asr.bounds import DROPOUT, KERNEL, LAYERS, WIDTH, Range, check_bounds
from asr.errors import UserError
from asr.models.conformer import ConformerBlock, ConformerEncoderConfig, scale_branches
from asr.modules.normalize import GlobalCMVN
from asr.modules.subsampling import Conv2dSubsampling

NO_STREAMING = ("the ANCAT encoder does not stream yet (its streaming inference and export are not built); decode it "
                "offline (asr decode, asr transcribe without --streaming)")


@dataclass
class AncatEncoderConfig:
    type: str = "ancat"
    num_layers: int = 6
    d_model: int = 144
    num_heads: int = 4
    ffn_dim: int = 576
    conv_kernel: int = 15  # causal depthwise conv, encoder frames
    left_context_encoder_frames: int = 64  # attention history (x 40 ms)
    subsampling_channels: int = 64
    dropout: float = 0.1
    branch_init_scale: float = 1.0  # as the Conformer's (asr.models.conformer)
    max_lookahead: int = 2  # R: the most future frames one layer may attend to (x 40 ms)
    scheduler_dim: int = 32  # the scheduler's hidden width
    gumbel_temperature: float = 1.0
    # scale of the Gumbel noise of the training samples: 1 samples as the paper reads, 0 takes the argmax
    # (a deterministic straight-through estimator); the noisy masks slowed learning (RESULTS.md, "ANCAT")
    gumbel_noise: float = 1.0
    latency_weight: float = 0.0  # lambda: weight of the summed compounded look-ahead in the loss (frames)
    # in training, this share of the batches runs with full context (no schedulers, no penalty), as the
    # Conformer's dynamic chunk training draws full context (0) among its chunks: a causal-leaning model
    # from scratch sat on the loss plateau for 600+ steps without it (recipes/synth/RESULTS.md, "ANCAT")
    full_context_prob: float = 0.0

    BOUNDS = {"num_layers": LAYERS, "d_model": WIDTH, "num_heads": Range(1, 256), "ffn_dim": WIDTH, "conv_kernel": KERNEL,
              "left_context_encoder_frames": Range(0, 25000), "subsampling_channels": WIDTH, "dropout": DROPOUT,
              "branch_init_scale": Range(0, 1), "max_lookahead": Range(0, 64), "scheduler_dim": WIDTH,
              "gumbel_temperature": Range(1e-3, 100), "latency_weight": Range(0, 1000), "full_context_prob": Range(0, 1), "gumbel_noise": Range(0, 10)}

    def __post_init__(self):
        check_bounds(self, "model.encoder")
        if self.d_model % self.num_heads or self.d_model % 2:
            raise UserError(f"model.encoder.d_model={self.d_model}: must be even and divisible by num_heads={self.num_heads}")

    def block_config(self) -> ConformerEncoderConfig:
        """The Conformer block sizes (its chunk fields are unused here)."""
        return ConformerEncoderConfig(num_layers=self.num_layers, d_model=self.d_model, num_heads=self.num_heads,
                                      ffn_dim=self.ffn_dim, conv_kernel=self.conv_kernel,
                                      left_context_encoder_frames=self.left_context_encoder_frames,
                                      subsampling_channels=self.subsampling_channels, dropout=self.dropout,
                                      branch_init_scale=self.branch_init_scale)


class LookaheadScheduler(nn.Module):
    """(N, T', D) layer input -> (N, T', R + 1) choices of right context: straight-through one-hot
    Gumbel samples in training, one-hot argmax in evaluation."""

    def __init__(self, d_model: int, hidden: int, max_lookahead: int, temperature: float, noise: float = 1.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, hidden), nn.ReLU(),
                                 nn.Linear(hidden, max_lookahead + 1))
        self.temperature, self.noise = temperature, noise
        self.forced: int | None = None  # tests: every frame takes this right context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        if self.forced is not None:
            return F.one_hot(torch.full(logits.shape[:-1], self.forced, device=x.device), logits.size(-1)).to(x.dtype)
        if not self.training:
            return F.one_hot(logits.argmax(-1), logits.size(-1)).to(x.dtype)
        if self.noise:  # Gumbel(0, 1) noise, scaled
            logits = logits - self.noise * torch.empty_like(logits).exponential_().log()
        soft = (logits / self.temperature).softmax(-1)
        hard = F.one_hot(soft.argmax(-1), soft.size(-1)).to(x.dtype)
        return hard - soft.detach() + soft  # one-hot forward (in this order, as torch.nn.functional.gumbel_softmax), the soft sample's gradient


def lookahead_weights(z: torch.Tensor, t: int, left: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Choices z (N, T', R + 1) -> (allowed (T', T') bool: ``t - left <= t' <= t + R``, weights (N, T', T'):
    1 at and before t, ``sum_{r >= d} z[t, r]`` at ``t + d`` for 1 <= d <= R, 0 elsewhere)."""
    r_max = z.size(-1) - 1
    idx = torch.arange(t, device=z.device)
    d = idx.view(1, t) - idx.view(t, 1)  # (T', T') t' - t
    allowed = (d >= -left) & (d <= r_max)
    at_least = z.flip(-1).cumsum(-1).flip(-1)  # (N, T', R + 1): P(r >= j), j = 0..R
    future = at_least.gather(2, d.clamp(0, r_max).unsqueeze(0).expand(z.size(0), t, t))  # (N, T', T')
    weights = torch.where(d.unsqueeze(0) <= 0, torch.ones_like(future), future) * allowed
    return allowed, weights


def compound_lookahead(choices: list[torch.Tensor], lens: torch.Tensor) -> torch.Tensor:
    """Each layer's choices (N, T', R + 1) (one-hot, or straight-through one-hot) -> (N, T') the frames
    of future input each output frame needs, ``D^B_t`` of the module docstring: at each layer the
    expectation, under that layer's choices, of ``max(D_t, max_{1 <= k <= r} (k + D_{t+k}))``, where
    frames at or past the utterance's length are not waited for."""
    n, t, _ = choices[0].shape
    valid = torch.arange(t, device=lens.device).view(1, t) < lens.view(-1, 1)  # (N, T')
    d = choices[0].new_zeros(n, t)
    for z in choices:
        best = [d]  # best[j]: max over k <= j of (k + D_{t+k}), frames that exist only
        for k in range(1, z.size(-1)):
            shifted = F.pad(d[:, k:], (0, k))  # D_{t+k}
            exists = F.pad(valid[:, k:], (0, k), value=False)
            best.append(torch.where(exists, torch.maximum(best[-1], shifted + k), best[-1]))
        d = (torch.stack(best, dim=-1) * z).sum(-1)
    return d * valid


class AncatEncoder(nn.Module):
    def __init__(self, num_mel_bins: int, cfg: AncatEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.normalize = GlobalCMVN(num_mel_bins)
        self.subsampling = Conv2dSubsampling(num_mel_bins, cfg.d_model, cfg.subsampling_channels)
        self.dropout = nn.Dropout(cfg.dropout)
        block = cfg.block_config()
        self.layers = nn.ModuleList(ConformerBlock(block) for _ in range(cfg.num_layers))
        self.schedulers = nn.ModuleList(LookaheadScheduler(cfg.d_model, cfg.scheduler_dim, cfg.max_lookahead,
                                                           cfg.gumbel_temperature, cfg.gumbel_noise)
                                        for _ in range(cfg.num_layers))
        self.output_dim = cfg.d_model
        scale_branches(self.layers, cfg.branch_init_scale)
        self.lookahead: torch.Tensor | None = None  # (N, T') D^B_t of the last forward (straight-through)

    required_chunk_encoder_frames = 0  # no chunked streaming (not built): see streaming_forward
    no_streaming = NO_STREAMING  # what asr.chunking.chunking_for says when asked to stream it

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor,
                chunk_encoder_frames: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, T, F), x_lens: (N,) -> (N, T', D), (N,); the compounded look-ahead in ``lookahead``.
        ``chunk_encoder_frames`` is accepted for the encoders' common signature: 0 (full context, as the
        reference alignments ask) gives every layer the whole utterance; anything else is ignored. In
        training, ``full_context_prob`` of the batches also run with full context."""
        x, lens = self.subsampling(self.normalize(x), x_lens)  # (N, T', D)
        full = chunk_encoder_frames == 0 or (self.training and self.cfg.full_context_prob > 0
                                             and float(torch.rand(())) < self.cfg.full_context_prob)
        return self.forward_frames(self.dropout(x), lens, full_context=full)

    def forward_frames(self, x: torch.Tensor, lens: torch.Tensor, full_context: bool = False):
        """The blocks on subsampled frames (N, T', D) (tests feed them directly)."""
        n, t, d = x.shape
        if t == 0:
            self.lookahead = x.new_zeros(n, 0)
            return x, lens
        valid_keys = torch.arange(t, device=x.device).view(1, 1, t) < lens.view(-1, 1, 1)  # (N, 1, T')
        valid = (torch.arange(t, device=x.device).view(1, t) < lens.view(-1, 1)).to(x.dtype)
        empty = x.new_zeros(n, 0, d)
        conv0 = x.new_zeros(n, d, self.cfg.conv_kernel - 1)
        choices = []
        for layer, scheduler in zip(self.layers, self.schedulers):
            if full_context:
                mask, weights = valid_keys.expand(n, t, t), None
            else:
                z = scheduler(x)
                choices.append(z)
                allowed, weights = lookahead_weights(z, t, self.cfg.left_context_encoder_frames)
                mask = allowed.unsqueeze(0) & valid_keys
            x, _, _, _ = layer(x, empty, empty, conv0, 0, mask, valid, weights)
        self.lookahead = compound_lookahead(choices, lens) if choices else None
        return x, lens

    def regulariser(self) -> torch.Tensor | None:
        """``latency_weight`` x the summed compounded look-ahead of the last forward (training only)."""
        if not self.training or not self.cfg.latency_weight or self.lookahead is None:
            return None
        return self.cfg.latency_weight * self.lookahead.sum()

    def init_state(self, batch: int, device: torch.device | str = "cpu"):
        raise UserError(NO_STREAMING)

    def streaming_forward(self, x: torch.Tensor, x_lens: torch.Tensor, state):
        raise UserError(NO_STREAMING)
