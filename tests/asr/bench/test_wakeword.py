"""``asr bench wakeword`` end to end on the tiny wake-word data: the keyword-graph baseline on an exported
untrained model, the dual-attention row on an untrained wake-word model; the table, the results file's
keys, the DET plot (the metrics themselves: tests/asr/test_metrics.py, the events:
tests/asr/decoding/test_wakeword_events.py)."""

from __future__ import annotations

import json

from asr.data.synth.wakeword import prepare_wakeword
from tests.conftest import assert_user_error


def test_bench_wakeword(asr_cli, tiny_checkpoint, tiny_corpus, tmp_path):
    from export.folder import export_onnx

    data = tmp_path / "ww"
    prepare_wakeword(data, size="tiny", num_workers=1)
    model_dir = tmp_path / "onnx"
    export_onnx(str(tiny_checkpoint.path), str(model_dir), chunk_feature_frames=16)
    out = tmp_path / "results.json"
    r = asr_cli("bench", "wakeword", "--model-dir", model_dir, "--data", data, "--negatives", tiny_corpus / "test",
                "--json", out, "--plot", tmp_path / "det.png")
    assert r.returncode == 0, r.stderr
    assert "| keyword-graph |" in r.stdout
    results = json.loads(out.read_text())
    (row,) = results["rows"]
    labels = [line.split("\t")[1] for line in (data / "test" / "wakeword.tsv").read_text().splitlines()[1:]]
    assert row["positives"] == labels.count("positive") > 0
    assert row["negative_utterances"] == len(labels) - labels.count("positive") + len(list((tiny_corpus / "test").rglob("*.flac")))
    for key in ("frr_at_0_5fa", "frr_at_1fa", "frr_at_2fa", "f1"):
        assert 0 <= row[key] <= 100
    assert results["baseline_f1"] == row["f1"] and row["negative_hours"] > 0
    assert (tmp_path / "det.png").stat().st_size > 1000
    assert_user_error(asr_cli("bench", "wakeword", "--model-dir", model_dir, "--data", tmp_path), "not wake-word data")


def _wakeword_checkpoint(tiny_checkpoint, path):
    """The tiny checkpoint with a biasing adapter and the dual-attention branches (untrained: the detector
    fires at random), saved as 'asr train' saves one; and the biasing model alone."""
    import torch

    from asr.checkpoint import load_model, save_checkpoint
    from asr.config import to_dict
    from asr.models.biasing import BiasingConfig
    from asr.models.registry import build_model
    from asr.models.wakeword import WakeWordConfig

    _, cfg, _ = load_model(str(tiny_checkpoint.path))
    out = []
    for name, wakeword in (("biasing.pt", None), ("wakeword.pt", WakeWordConfig(detector_dim=8, attention_dim=8))):
        cfg.model.biasing = BiasingConfig(char_hidden_dim=16, phrase_dim=16, attention_dim=16)
        cfg.model.wakeword = wakeword
        torch.manual_seed(0)
        model = build_model(cfg.model)
        save_checkpoint({"config": to_dict(cfg), "model": model.state_dict()}, path / name)
        out.append(path / name)
    return out


def test_bench_wakeword_dual_attention(asr_cli, tiny_checkpoint, tmp_path):
    data = tmp_path / "ww"
    prepare_wakeword(data, size="tiny", num_workers=1)
    base, dual = _wakeword_checkpoint(tiny_checkpoint, tmp_path)
    out = tmp_path / "results.json"
    r = asr_cli("bench", "wakeword", "--checkpoint", dual, "--base-checkpoint", base, "--data", data, "--json", out,
                "--list-size", "10")
    assert r.returncode == 0, r.stderr
    assert "| dual-attention |" in r.stdout and "attention FLOPs per frame" in r.stdout
    results = json.loads(out.read_text())
    (row,) = results["rows"]
    for key in ("frr_at_1fa", "frr_at_0_5fa", "frr_at_2fa", "f1", "attn_flops_wakeword_frame", "attn_flops_full_frame",
                "command_wer", "biasing_command_wer"):
        assert results[key] == row[key]
    assert 0 <= row["frr_at_1fa"] <= 100 and row["command_wer"] >= 0
    assert row["attn_flops_wakeword_frame"] < row["attn_flops_full_frame"] < row["total_flops_full_frame"]
    assert row["list_size"] == 10 and 0 < row["wakeword_params"] < row["params"]
    assert row["frr_at_1fa_by_voice"] and all(0 <= v <= 100 for v in row["frr_at_1fa_by_voice"].values())
    assert set(row["frr_at_1fa_by_voice"]) <= {"espeak-ng", "flite slt", "flite kal", "flite awb", "flite rms", "flite kal16"}
    assert "FRR % at 1 FA/h by voice" in r.stdout
    assert_user_error(asr_cli("bench", "wakeword", "--checkpoint", base, "--data", data), "not a wake-word model")
    assert_user_error(asr_cli("bench", "wakeword", "--data", data), "nothing to measure")


def test_frr_by_voice_by_hand(tmp_path):
    from pathlib import Path

    from asr.bench.wakeword import frr_by_voice, read_voices

    (tmp_path / "SPEAKERS.txt").write_text("; speaker | language | variant\n1 | en-us | f2\n2 | flite | slt\n")
    voices = read_voices(tmp_path)
    assert voices == {"1": "espeak-ng", "2": "flite slt"}
    files = [Path(f"test/{s}/21/{s}-21-{i}.flac") for s, i in (("1", 0), ("1", 1), ("2", 0), ("2", 1))]
    assert frr_by_voice(files, [0.9, 0.3, 0.2, 0.1], 0.5, voices) == {"espeak-ng": 50.0, "flite slt": 100.0}


def test_lstm_flops_by_hand():
    """torch.utils.flop_counter counts no nn.LSTM: ours, against the gates' matmuls by hand."""
    import torch

    from asr.bench.wakeword import lstm_flops

    assert lstm_flops(torch.nn.LSTM(80, 320), 10) == 2 * 10 * 4 * 320 * (80 + 320)
    assert lstm_flops(torch.nn.LSTM(80, 320, num_layers=2, proj_size=100), 1) == \
        2 * (4 * 320 * (80 + 100) + 320 * 100 + 4 * 320 * (100 + 100) + 320 * 100)
    assert lstm_flops(torch.nn.LSTM(8, 16, bidirectional=True), 1) == 2 * 2 * 4 * 16 * (8 + 16)
