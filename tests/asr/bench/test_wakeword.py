"""``asr bench wakeword`` end to end on the tiny wake-word data and an exported untrained model: the
table, the results file's keys, the DET plot (the metrics themselves: tests/asr/test_metrics.py)."""

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
