"""``asr bench latency``: the virtual clock and speech-end rules by hand, and one small run of every
engine kind on the tiny exported model (keys of the JSON, the plot, sherpa-onnx agreement)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sherpa_onnx")

from asr.bench.latency import JSON_KEYS, replay, speech_end_s  # noqa: E402
from tests.conftest import assert_user_error  # noqa: E402


def test_replay_waits_for_audio_and_queues_compute():
    # piece 0 arrives at 0.1 s: 0.01 s of features, then an encoder call of 0.05 s that emits the
    # first token; piece 1 arrives at 0.2 s but the clock is at 0.16 s, so it waits; piece 2 arrives
    # at 0.3 s while the engine is still busy (0.2 + 0.01 + 0.2 = 0.41 s) and queues behind it.
    trace = {"pieces": [[0.1, [0.01, 0.05]], [0.2, [0.01, 0.2]], [0.3, [0.02, 0.03]]],
             "first": [0, 1, 0.04], "final": [2, 1, "rule2"]}
    first, final = replay(trace)
    assert first == pytest.approx(0.16, abs=1e-12)
    assert final == pytest.approx(0.41 + 0.02 + 0.03, abs=1e-12)


def test_replay_without_events():
    assert replay({"pieces": [[0.1, [0.01]]], "first": None, "final": None}) == (None, None)


def test_speech_end_is_the_last_loud_frame():
    t = np.arange(16000) / 16000
    x = np.concatenate([0.5 * np.sin(2 * np.pi * 300 * t[:12345]), 1e-4 * np.ones(8000)]).astype(np.float32)
    # 12345 samples of tone: frames 0..77 hold tone (frame 77 partly), -74 dB after it is silence
    assert speech_end_s(x) == pytest.approx(0.78)
    assert speech_end_s(np.zeros(100, np.float32)) == 0.0


@pytest.fixture(scope="module")
def bench_run(tiny_checkpoint, tiny_corpus, tiny_fbank, tmp_path_factory):
    from asr.bench.latency import bench_latency
    from export.folder import export_onnx

    root = tmp_path_factory.mktemp("latency")
    export_onnx(str(tiny_checkpoint.path), str(root / "onnx"), chunk_feature_frames=16, int8=("dynamic",),
                calib=str(tiny_fbank / "cuts_train.jsonl.gz"), num_calib=4)
    rows, summary = bench_latency(str(root / "onnx"), str(tiny_corpus / "test"), str(tiny_checkpoint.path), max_utts=2,
                                  threads=(1,), max_silence_s=1.5, json_out=str(root / "lat.json"),
                                  plot_out=str(root / "lat.png"))
    return root, rows, summary


def test_every_engine_reports_every_key(bench_run):
    root, rows, summary = bench_run
    assert [r["engine"] for r in rows] == ["pytorch-fp32", "onnx-fp32", "onnx-int8-dynamic", "sherpa-onnx-fp32"]
    written = json.loads((root / "lat.json").read_text())
    assert [r["engine"] for r in written] == [r["engine"] for r in rows]
    for r in written:
        for key in JSON_KEYS:
            assert key in r, (r["engine"], key)
        assert r["rtf_1thread"] > 0 and r["rtf_2threads"] is None  # only 1 thread was asked for
        assert r["bytes"] > 0 and r["peak_rss_mb"] > 0 and r["chunk_ms_p50"] > 0
        # the final result cannot come before the speech ended, nor the first token before its frame
        assert r["upl_ms_p50"] is None or r["upl_ms_p50"] > 0
        assert r["first_token_ms_p50"] is None or r["first_token_ms_p50"] > 0
    assert (root / "lat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["utts"] == 2 and summary["sherpa_tokens_match"] is True, summary
    # the untrained model: its int8 copy is far smaller, not more accurate
    assert summary["int8_bytes"] < summary["fp32_bytes"] / 2


def test_cli_bad_input(asr_cli, tmp_path):
    assert_user_error(asr_cli("bench", "latency", "--model-dir", tmp_path / "none", "--audio-dir", tmp_path), "encoder.onnx")
