"""Forced alignment (Viterbi on the one-symbol-per-frame lattice) and the symbol-delay metric."""

import itertools

import numpy as np
import pytest
import torch

from asr.decoding.align import _viterbi, forced_align, symbol_delay


@pytest.mark.parametrize("u_len, t_len", [(0, 3), (1, 1), (3, 5), (4, 7), (5, 5)])
def test_viterbi_finds_the_best_path(u_len, t_len):
    rng = np.random.default_rng(u_len * 10 + t_len)
    px, py = rng.normal(size=(u_len, t_len)), rng.normal(size=(u_len + 1, t_len))

    def score(frames):
        s, u = 0.0, 0
        for t in range(t_len):
            if t in frames:
                s += px[u, t]
                u += 1
            else:
                s += py[u, t]
        return s

    best = max(itertools.combinations(range(t_len), u_len), key=score)
    frames = _viterbi(px, py)
    assert len(frames) == u_len and frames == sorted(frames)
    assert score(frames) == pytest.approx(score(best), abs=1e-12)


def test_forced_align_follows_a_model_that_knows_the_frames():
    """A joiner whose encoder input says which token is spoken on each frame is aligned exactly."""
    from asr.models.config import ModelConfig, PredictorConfig
    from asr.models.lstm import LSTMEncoderConfig
    from asr.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(encoder=LSTMEncoderConfig(num_layers=1, hidden_dim=8, proj_dim=0, subsampling_dim=8,
                                                              subsampling_channels=4, dropout=0.0),
                                    predictor=PredictorConfig(embed_dim=4), joiner_dim=6, vocab_size=6)).eval()
    truth = [1, 4, 6, 9]  # frames of tokens 2, 3, 4, 5
    tokens = [2, 3, 4, 5]

    class Oracle(torch.nn.Module):
        output_dim = 6

        def forward(self, x, x_lens, chunk_encoder_frames=None):  # every encoder's signature
            enc = torch.full((1, 12, 6), -5.0)
            enc[0, :, 0] = 5.0  # blank everywhere ...
            for f, tok in zip(truth, tokens):
                enc[0, f, 0], enc[0, f, tok] = -5.0, 5.0  # ... except the token's frame
            return enc, torch.tensor([12])

    model.encoder = Oracle()
    model.joiner.encoder_proj = torch.nn.Identity()
    model.joiner.predictor_proj = torch.nn.Linear(4, 6)
    torch.nn.init.zeros_(model.joiner.predictor_proj.weight)
    torch.nn.init.zeros_(model.joiner.predictor_proj.bias)
    model.joiner.output = torch.nn.Identity()  # logits = encoder input
    assert forced_align(model, torch.zeros(1, 60, 80), torch.tensor([60]), [tokens]) == [truth]


def test_symbol_delay_pairs_equal_tokens():
    # hyp drops token 7 and inserts 9; paired equal tokens 1, 2, 3 are late by 2, 2 and 1 frames
    delay, count = symbol_delay([[1, 2, 9, 3]], [[3, 5, 6, 8]], [[1, 2, 7, 3]], [[1, 3, 5, 7]])
    assert count == 3 and delay == pytest.approx((2 + 2 + 1) / 3)
    assert np.isnan(symbol_delay([[1]], [[0]], [[1]], [[]])[0])
