"""The dual-attention wake-word transducer: a frame-level wake-word detector chooses, for every encoder
frame, which of two biasing attentions runs on it.

After Sahai et al., "Dual-attention neural transducers for efficient wake word spotting in speech
recognition" (ICASSP 2023, arXiv 2304.01905), built on the contextual adapter of
``asr.models.biasing`` and on Bifocal RNN-T's keyword-driven switch between compute paths (Macoskey
et al., arXiv 2108.01704). The paper's method section is brief; this is our reading of it:

* **detector** (:class:`WakeWordDetector`): a small per-frame head on the encoder output,
  ``p_t = sigmoid(w_2 . relu(W_1 h_t + b_1) + b_2)``; a frame is a wake-word frame when
  ``p_t >= threshold``. It sees one frame, so it streams exactly as the encoder does;
* **branch A**, the full biasing attention over the bias list (``asr.models.biasing.BiasingAdapter``
  on the encoder output, ``model.biasing``), runs on the other frames;
* **branch B** (:class:`WakeWordAttention`), a small attention over a handful of learned wake-word
  entries plus a no-bias entry, with projections of ``attention_dim`` (a few times narrower than
  branch A's), runs on the wake-word frames: ``h'_t = h_t + W_o^B softmax(q^B_t . K^B / sqrt(a)) V^B``,
  ``W_o^B`` zero-initialised like branch A's, so adding the branches to a biasing model starts from it;
* **routing**: ``h'_t = h_t + (1 - s_t) A(h_t) + s_t B(h_t)``. At inference
  (:meth:`DualAttention.route`, also what the ONNX encoder graph holds) the frames of each kind are
  gathered and only their branch runs on them; in training both branches run on every frame of the batch and ``torch.where`` keeps one per
  frame (the branches are position-wise, so the outputs, and the gradients, are those of the gathered
  execution: a branch gets no gradient from a frame routed to the other);
* **training**: ``s_t`` is teacher-forced from the model's forced alignment of the wake word's tokens
  (``asr.train.wake_word_targets``), and the detector learns those labels with a binary cross-entropy
  weighted by ``detector_loss`` beside the transducer loss. The transducer also learns to emit the wake
  word's tokens: they are in the transcripts.

Wake events (``asr.decoding.wakeword``) come from the detector's probabilities.

Shape legend: N batch, T' encoder frames, E encoder dim, M gathered frames, K wake-word entries,
a branch B's attention dim.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from asr.bounds import WIDTH, Range, check_bounds
from asr.errors import UserError

WAKEWORD_TYPES = ("dual-attention",)


@dataclass
class WakeWordConfig:
    """``model.wakeword``: None (the default) builds none. Needs ``model.biasing`` (branch A)."""

    type: str = "dual-attention"
    word: str = "zephyra"  # the wake word: its frames in the training transcripts are the detector's positives
    detector_dim: int = 64  # the detector's hidden width
    entries: int = 4  # branch B's learned wake-word entries (besides its no-bias entry)
    attention_dim: int = 16  # branch B's projection width
    detector_loss: float = 1.0  # weight of the detector's cross-entropy (training only)
    threshold: float = 0.5  # p_t at or above it: a wake-word frame

    BOUNDS = {"detector_dim": WIDTH, "entries": Range(1, 64), "attention_dim": WIDTH, "detector_loss": Range(0, 100),
              "threshold": Range(0, 1)}

    def __post_init__(self):
        check_bounds(self, "model.wakeword")
        if self.type not in WAKEWORD_TYPES:
            raise UserError(f"model.wakeword.type={self.type!r}: use {' or '.join(map(repr, WAKEWORD_TYPES))}")
        if not (isinstance(self.word, str) and self.word.isascii() and self.word.isalpha()):
            raise UserError(f"model.wakeword.word={self.word!r}: one word of letters a-z")


def wakeword_config_class(name: str, where: str = "model.wakeword.type"):
    """``model.wakeword`` is chosen by its ``type``; :class:`WakeWordConfig` checks the name."""
    return WakeWordConfig


class WakeWordDetector(nn.Module):
    """(..., E) encoder frames -> (...) wake-word logits, frame by frame."""

    def __init__(self, encoder_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(encoder_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(h))).squeeze(-1)


class WakeWordAttention(nn.Module):
    """Branch B: (..., E) -> (..., E), ``h + W_o softmax(W_q h . K^T / sqrt(a)) V`` over K learned
    entries and a no-bias entry (the keys and values are parameters: nothing to encode per list)."""

    def __init__(self, encoder_dim: int, entries: int, attention_dim: int) -> None:
        super().__init__()
        self.keys = nn.Parameter(torch.randn(entries + 1, attention_dim) / math.sqrt(attention_dim))
        self.values = nn.Parameter(torch.randn(entries + 1, attention_dim) / math.sqrt(attention_dim))
        self.query = nn.Linear(encoder_dim, attention_dim, bias=False)
        self.out = nn.Linear(attention_dim, encoder_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        weights = (self.query(h) @ self.keys.T / math.sqrt(self.keys.size(1))).softmax(dim=-1)
        return h + self.out(weights @ self.values)


class DualAttention(nn.Module):
    """The detector and branch B of a wake-word transducer (``Transducer.wakeword``); branch A is the
    model's biasing adapter, passed in as a function of the frames."""

    def __init__(self, cfg: WakeWordConfig, encoder_dim: int) -> None:
        super().__init__()
        self.word = cfg.word.upper()
        self.threshold = cfg.threshold
        self.detector_loss = cfg.detector_loss
        self.detector = WakeWordDetector(encoder_dim, cfg.detector_dim)
        self.wake = WakeWordAttention(encoder_dim, cfg.entries, cfg.attention_dim)

    def probabilities(self, enc: torch.Tensor) -> torch.Tensor:
        """(N, T', E) -> (N, T') the detector's wake-word probability of every frame."""
        return torch.sigmoid(self.detector(enc))

    def route(self, enc: torch.Tensor, full: Callable[[torch.Tensor], torch.Tensor],
              wake_frames: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: enc (N, T', E) -> (routed enc (N, T', E), p (N, T')). Frames with
        ``p >= threshold`` (or ``wake_frames``, (N, T') bool, when given) go through branch B, the others
        through ``full`` (branch A: (M, E) -> (M, E)); each branch runs on its own frames only, gathered
        (a branch with no frame runs on 0 rows: no arithmetic). No Python branch on the data, so the
        ONNX export traces the same gather / scatter (NonZero, Gather, ScatterND)."""
        p = self.probabilities(enc)
        s = (p >= self.threshold) if wake_frames is None else wake_frames
        flat = enc.reshape(-1, enc.size(-1))  # (N T', E)
        wake_rows = s.reshape(-1).nonzero().squeeze(1)
        full_rows = torch.logical_not(s).reshape(-1).nonzero().squeeze(1)
        out = torch.zeros_like(flat)
        out = out.index_put((wake_rows,), self.wake(flat.index_select(0, wake_rows)))
        out = out.index_put((full_rows,), full(flat.index_select(0, full_rows)))
        return out.reshape(enc.shape), p

    def route_for_training(self, enc: torch.Tensor, full_enc: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: enc (N, T', E), ``full_enc`` = branch A's output on every frame, targets (N, T')
        (1 wake-word frame, 0 other, -1 unknown: routed by the detector; beyond T': unknown) -> (routed
        enc, the detector's summed cross-entropy over the known frames, times ``detector_loss``)."""
        logits = self.detector(enc)
        t = enc.size(1)  # targets longer or shorter than the frames: cropped, or padded with -1
        targets = nn.functional.pad(targets[:, :t], (0, max(0, t - targets.size(1))), value=-1)
        known = targets >= 0
        s = torch.where(known, targets == 1, torch.sigmoid(logits.detach()) >= self.threshold)
        routed = torch.where(s.unsqueeze(-1), self.wake(enc), full_enc)
        loss = nn.functional.binary_cross_entropy_with_logits(logits[known], targets[known].to(logits.dtype), reduction="sum")
        return routed, self.detector_loss * loss


def attention_flops(encoder_dim: int, attention_dim: int, entries: int) -> int:
    """Multiply-adds x 2 of one frame's cross-attention to ``entries`` keys and values already projected
    (a list's keys and values are computed once per list, not per frame): the query projection, the
    scores, the weighted sum and the output projection. Softmax and bias adds are not counted (as
    torch.utils.flop_counter does not)."""
    return 2 * (encoder_dim * attention_dim + 2 * entries * attention_dim + attention_dim * encoder_dim)
