"""Transducer = encoder + predictor + joiner (Graves 2012), as in torchaudio's ``models/rnnt.py``.

Joiner: ``logits = output(tanh(encoder_proj(enc) + predictor_proj(pred)))``; the projections are
applied before the broadcast add so the (N, T, U + 1, J) lattice is built only once.

Shape legend: N batch, T frames, T' encoder frames, U tokens, V vocabulary, E encoder dim,
D predictor dim, J joiner dim.
"""

from __future__ import annotations

import torch
from torch import nn

from asr.losses import rnnt_loss


class Joiner(nn.Module):
    def __init__(self, encoder_dim: int, predictor_dim: int, joiner_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.encoder_proj = nn.Linear(encoder_dim, joiner_dim)
        self.predictor_proj = nn.Linear(predictor_dim, joiner_dim)
        self.output = nn.Linear(joiner_dim, vocab_size)

    def forward(self, enc_proj: torch.Tensor, pred_proj: torch.Tensor) -> torch.Tensor:
        """Already projected inputs, broadcastable (e.g. (N, T', 1, J) and (N, 1, U+1, J)) -> (..., V)."""
        return self.output(torch.tanh(enc_proj + pred_proj))


class Transducer(nn.Module):
    """With ``ctc_weight > 0`` training adds ``ctc_weight`` x a CTC loss on a linear layer over the
    encoder output (a training-only head, as in joint CTC/transducer training): it gives the
    encoder a direct, alignment-free acoustic target and speeds up convergence from scratch.
    Decoding and export never use it."""

    def __init__(self, encoder: nn.Module, predictor: nn.Module, joiner: Joiner, blank_id: int = 0, ctc_weight: float = 0.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor
        self.joiner = joiner
        self.blank_id = blank_id
        self.ctc_weight = ctc_weight
        self.ctc_output = nn.Linear(encoder.output_dim, joiner.output.out_features) if ctc_weight > 0 else None

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor, y: torch.Tensor, y_lens: torch.Tensor) -> torch.Tensor:
        """x: (N, T, F), y: (N, U) padded token ids -> summed RNN-T loss over the batch (a scalar)."""
        enc, enc_lens = self.encoder(x, x_lens)  # (N, T', E)
        blank = torch.full((y.size(0), 1), self.blank_id, dtype=y.dtype, device=y.device)
        pred = self.predictor(torch.cat([blank, y], dim=1))  # (N, U+1, D)
        logits = self.joiner(
            self.joiner.encoder_proj(enc).unsqueeze(2),  # (N, T', 1, J)
            self.joiner.predictor_proj(pred).unsqueeze(1),  # (N, 1, U+1, J)
        )  # (N, T', U+1, V)
        loss = rnnt_loss(logits, y, enc_lens, y_lens, blank=self.blank_id, reduction="sum")
        if self.ctc_output is not None:
            log_probs = self.ctc_output(enc).log_softmax(-1).transpose(0, 1)  # (T', N, V)
            ctc = nn.functional.ctc_loss(log_probs, y, enc_lens, y_lens, blank=self.blank_id, reduction="sum", zero_infinity=True)
            loss = loss + self.ctc_weight * ctc
        return loss

    def encode(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-utterance encoder output, projected for the joiner: (N, T', J), (N,)."""
        enc, enc_lens = self.encoder(x, x_lens)
        return self.joiner.encoder_proj(enc), enc_lens

    def predict(self, y_ctx: torch.Tensor, state=None):
        """One predictor step, projected for the joiner: (N, C) -> (N, J), new state."""
        out, state = self.predictor.step(y_ctx, state)
        return self.joiner.predictor_proj(out), state

    def join(self, enc_proj: torch.Tensor, pred_proj: torch.Tensor) -> torch.Tensor:
        """(..., J), (..., J) -> raw logits (..., V)."""
        return self.joiner(enc_proj, pred_proj)
