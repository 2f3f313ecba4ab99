"""``asr bench ancat`` on the tiny test split: an ANCAT model, a fixed-chunk Conformer and a full-context one
(untrained, tiny): a row each with the issue's keys; the look-ahead of a fixed chunk and of full context
against their definitions; the emission delay is measured against the reference."""

from __future__ import annotations

import json

import torch

from asr.bench.ancat import frame_lookahead
from asr.checkpoint import read_checkpoint, save_checkpoint
from asr.config import TrainConfig, from_dict, to_dict
from asr.models.ancat import AncatEncoderConfig
from asr.models.conformer import ConformerEncoder, ConformerEncoderConfig
from asr.models.registry import build_model
from tests.conftest import assert_user_error

BLOCKS = dict(num_layers=2, d_model=32, num_heads=2, ffn_dim=64, conv_kernel=5, left_context_encoder_frames=8,
              subsampling_channels=8, dropout=0.0)


def _checkpoint(tiny_checkpoint, path, encoder):
    ckpt = read_checkpoint(tiny_checkpoint.path)
    cfg = from_dict(TrainConfig, ckpt["config"], "tiny")
    cfg.model.encoder = encoder
    torch.manual_seed(0)
    model = build_model(cfg.model)
    with torch.no_grad():
        model.joiner.output.bias[0] -= 3.0  # emit something
    save_checkpoint({**ckpt, "config": to_dict(cfg), "model": model.state_dict()}, path)
    return path


def test_fixed_and_full_lookahead_by_definition():
    enc = ConformerEncoder(80, ConformerEncoderConfig(**BLOCKS, chunk_encoder_frames=4))
    la, kind, setting = frame_lookahead(enc, torch.tensor([10, 6]), 10)
    assert (kind, setting) == ("fixed", "chunk=4")
    assert la[0].tolist() == [3, 2, 1, 0, 3, 2, 1, 0, 1, 0] and la[1, :6].tolist() == [3, 2, 1, 0, 1, 0]
    enc.cfg.chunk_encoder_frames = 0
    la, kind, _ = frame_lookahead(enc, torch.tensor([5]), 5)
    assert kind == "full" and la[0].tolist() == [4, 3, 2, 1, 0]


def test_bench_ancat(asr_cli, tiny_checkpoint, tiny_fbank, tmp_path):
    ancat = _checkpoint(tiny_checkpoint, tmp_path / "ancat.pt", AncatEncoderConfig(**BLOCKS, max_lookahead=2, scheduler_dim=8,
                                                                                   latency_weight=0.1))
    fixed = _checkpoint(tiny_checkpoint, tmp_path / "fixed.pt", ConformerEncoderConfig(**BLOCKS, chunk_encoder_frames=4))
    full = _checkpoint(tiny_checkpoint, tmp_path / "full.pt", ConformerEncoderConfig(**BLOCKS, chunk_encoder_frames=0))
    out = tmp_path / "results.json"
    cuts = tiny_fbank / "cuts_test.jsonl.gz"
    r = asr_cli("bench", "ancat", "--checkpoints", ancat, fixed, full, "--reference", full, "--cuts", cuts, "--json", out)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())
    assert [row["model"] for row in rows] == ["ancat", "fixed", "full"]
    for row in rows:
        assert {"model", "setting", "wer", "lookahead_ms_mean", "lookahead_ms_p90", "emission_delay_ms"} <= set(row)
        assert min(row["lookahead_ms_mean"], row["lookahead_ms_p90"]) >= 50
    # untrained models: some emit tokens that pair with the reference's alignment (random ones may not)
    assert any(row["emission_delay_ms"] is not None for row in rows)
    assert 50 < rows[1]["lookahead_ms_mean"] < 50 + 40 * 3 and rows[1]["lookahead_ms_p90"] <= 50 + 40 * 3  # chunk of 4
    assert rows[0]["lookahead_ms_p90"] <= 50 + 40 * 2 * 2  # at most 2 frames per layer, 2 layers
    assert rows[2]["lookahead_ms_mean"] > rows[1]["lookahead_ms_mean"]  # full context waits for the end
    assert_user_error(asr_cli("bench", "ancat", "--checkpoints", tmp_path / "missing.pt", "--cuts", cuts), "missing.pt")
