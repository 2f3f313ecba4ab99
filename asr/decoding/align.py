"""Forced alignment and symbol delay (icefall's "symbol delay", as reported with the delay-penalized
transducer of Kang et al. 2023).

``forced_align`` finds the single best path of the reference tokens through a transducer's lattice
(Viterbi, at most one symbol per frame: the lattice our searches and sherpa-onnx's walk) and returns
the encoder frame on which each token is emitted. ``symbol_delay`` compares the frames at which a
search emitted its tokens with those of a reference alignment: tokens are paired by an edit-distance
alignment of the two token sequences (kaldialign), and the delay is the mean of (hypothesis frame -
reference frame) over paired equal tokens, in encoder frames. Multiply by the frame shift (40 ms) for
milliseconds.

The reference alignment should come from a model that sees the whole utterance (a "full-context"
model: ``forced_align`` runs every encoder with ``chunk_encoder_frames=0``, which a Conformer reads
as full context and the causal encoders ignore): its emissions are not delayed by waiting for
context, so the difference measures how late a streaming model emits.

Shape legend: N batch, T' encoder frames, U tokens, V vocabulary.
"""

from __future__ import annotations

import kaldialign
import numpy as np
import torch


def _viterbi(px: np.ndarray, py: np.ndarray) -> list[int]:
    """Best modified-lattice path for one utterance. px (U, T) symbol log-probs at (u, t),
    py (U + 1, T) blank log-probs -> emission frame of each of the U tokens."""
    u_len, t_len = px.shape[0], py.shape[1]
    score = np.full((u_len + 1, t_len + 1), -np.inf)
    score[0, 0] = 0.0
    emitted = np.zeros((u_len + 1, t_len + 1), dtype=bool)  # best move into (u, t) was a symbol
    for t in range(1, t_len + 1):
        blank = score[:, t - 1] + py[:, t - 1]  # (U + 1,)
        symbol = np.full(u_len + 1, -np.inf)
        symbol[1:] = score[:-1, t - 1] + px[:, t - 1]
        emitted[:, t] = symbol > blank
        score[:, t] = np.maximum(blank, symbol)
    frames, u = [], u_len
    for t in range(t_len, 0, -1):
        if emitted[u, t]:
            frames.append(t - 1)
            u -= 1
    if u != 0:
        raise ValueError("no path emits every token (more tokens than frames)")
    return frames[::-1]


@torch.no_grad()
def forced_align(model, x: torch.Tensor, x_lens: torch.Tensor, ys: list[list[int]]) -> list[list[int]]:
    """Encoder frame of every reference token, per utterance, with the encoder run in full context.
    x (N, T, F). Utterances with more tokens than encoder frames get an empty list."""
    enc, enc_lens = model.encoder(x, x_lens, chunk_encoder_frames=0)
    enc = model.joiner.encoder_proj(enc)  # (N, T', J)
    out = []
    for n, y in enumerate(ys):
        t_len = int(enc_lens[n])
        if len(y) > t_len:
            out.append([])
            continue
        pred = model.joiner.predictor_proj(_predictor_outputs(model, y))  # (U + 1, J)
        lp = model.join(enc[n, :t_len].unsqueeze(1), pred.unsqueeze(0)).log_softmax(-1)  # (T', U + 1, V)
        tokens = torch.tensor(y, dtype=torch.long)
        px = lp[:, :-1].gather(2, tokens.view(1, -1, 1).expand(t_len, -1, 1)).squeeze(2).T  # (U, T')
        py = lp[:, :, model.blank_id].T  # (U + 1, T')
        out.append(_viterbi(px.double().numpy(), py.double().numpy()))
    return out


def _predictor_outputs(model, y: list[int]) -> torch.Tensor:
    """Predictor output for the contexts before each token and after the last: (U + 1, D)."""
    blank_prefixed = torch.tensor([[model.blank_id] + y])
    return model.predictor(blank_prefixed)[0]


def symbol_delay(hyp_tokens: list[list[int]], hyp_frames: list[list[int]], ref_tokens: list[list[int]],
                 ref_frames: list[list[int]]) -> tuple[float, int]:
    """(mean delay in encoder frames, number of paired tokens) over a set of utterances."""
    total, count = 0.0, 0
    for h, hf, r, rf in zip(hyp_tokens, hyp_frames, ref_tokens, ref_frames):
        if not rf:
            continue
        hi = ri = 0
        for a, b in kaldialign.align(r, h, -1):  # token ids are >= 0, so -1 marks a gap
            if a != -1 and b != -1:
                if a == b:
                    total += hf[hi] - rf[ri]
                    count += 1
                hi += 1
                ri += 1
            elif a == -1:
                hi += 1
            else:
                ri += 1
    return (total / count if count else float("nan")), count
