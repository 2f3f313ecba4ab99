"""The streaming contract's arithmetic (``asr.chunking``), hand-checked, and what each encoder streams at."""

from __future__ import annotations

import pytest
import torch

from asr.chunking import (ENCODER_FRAME_MS, OVERLAP_FEATURE_FRAMES, SUBSAMPLING_FACTOR, Chunking, chunk_starts,
                          chunking_for, encoder_frames)
from asr.errors import UserError
from asr.models.config import encoder_config
from asr.models.registry import ENCODERS
from asr.modules.subsampling import Conv2dSubsampling


def test_hand_checked_numbers():
    c = Chunking(32)  # the demo's: sherpa-onnx decode_chunk_len 32, T 37
    assert (c.chunk_feature_frames, c.window_feature_frames, c.chunk_encoder_frames) == (32, 37, 8)
    assert c.algorithmic_latency_ms == 370  # 320 ms of chunk + 50 ms of subsampling look-ahead
    assert Chunking.from_encoder_frames(4) == Chunking(16)
    assert (SUBSAMPLING_FACTOR, OVERLAP_FEATURE_FRAMES, ENCODER_FRAME_MS) == (4, 5, 40)
    # ((T - 3) // 2 - 1) // 2: 8 frames give none, 9 give one, a window of 4k + 5 gives k
    assert [encoder_frames(t) for t in (0, 8, 9, 12, 13, 37, 157)] == [0, 0, 1, 1, 2, 8, 38]
    lens = torch.tensor([0, 9, 37, 157])
    assert encoder_frames(lens).tolist() == [0, 1, 8, 38]


def test_the_conv_subsampling_is_built_to_the_numbers():
    """What the convolutions really output: encoder_frames(T) frames, the first from 9 feature frames,
    and windows of 4k + 5 frames advancing by 4k give the full forward's frames."""
    torch.manual_seed(0)
    sub = Conv2dSubsampling(80, 16, 8).eval()
    for t in range(0, 60):
        out, lens = sub(torch.randn(1, t, 80), torch.tensor([t]))
        assert out.size(1) == int(lens[0]) == encoder_frames(t), t
    x = torch.randn(1, 4 * 6 + OVERLAP_FEATURE_FRAMES, 80)
    full = sub(x, torch.tensor([x.size(1)]))[0]
    chunk = Chunking.from_encoder_frames(2)
    pieces = [sub(x[:, s : s + chunk.window_feature_frames], torch.tensor([chunk.window_feature_frames]))[0]
              for s in chunk_starts(x.size(1), chunk)]
    diff = (torch.cat(pieces, dim=1) - full).abs().max().item()
    assert diff <= 1e-5, f"windows vs full forward: max |diff| {diff:.2e}"  # fp32, other conv shapes
    assert list(chunk_starts(45, Chunking(16))) == [0, 16, 32]  # 32 + 9 <= 45 < 48 + 9


@pytest.mark.parametrize("bad", [0, 2, 30, -4])
def test_a_chunk_is_a_positive_multiple_of_four(bad):
    with pytest.raises(UserError, match=f"--chunk-feature-frames {bad}: must be a positive multiple of 4"):
        Chunking(bad)


def _encoder(name: str, **kw):
    cfg = encoder_config(name, **kw)
    return ENCODERS[type(cfg)](80, cfg)


def test_each_encoder_streams_at_its_chunk():
    lstm = _encoder("lstm", num_layers=1, hidden_dim=16, proj_dim=0, subsampling_dim=16, subsampling_channels=8)
    convrnnt = _encoder("convrnnt", d_model=16, local_channels=(2, 2), global_blocks=1, num_layers=1, hidden_dim=16,
                        subsampling_channels=8)
    conformer = _encoder("conformer", num_layers=1, d_model=16, num_heads=2, ffn_dim=16, chunk_encoder_frames=4,
                         left_context_encoder_frames=8, subsampling_channels=8)
    assert chunking_for(lstm) == chunking_for(convrnnt) == Chunking(32)
    assert chunking_for(lstm, 12) == Chunking(12)  # causal: any chunk
    assert chunking_for(conformer) == Chunking(16)  # its own chunk
    with pytest.raises(UserError, match="--chunk-feature-frames 32: .* chunks of 4 encoder frames .*16"):
        chunking_for(conformer, 32)
    full_context = _encoder("conformer", num_layers=1, d_model=16, num_heads=2, chunk_encoder_frames=0)
    with pytest.raises(UserError, match="full-context encoder .* cannot stream"):
        chunking_for(full_context)
