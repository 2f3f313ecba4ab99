"""``asr bench sherpa`` end to end on the tiny exported model: sherpa-onnx in its own process beside
our recognizer, and the agreement of their tokens."""

from __future__ import annotations

import re

import pytest

from tests.conftest import assert_user_error


@pytest.fixture(scope="module")
def tiny_export(tiny_checkpoint, tmp_path_factory):
    from export.folder import export_onnx

    out = tmp_path_factory.mktemp("sherpa") / "onnx"
    export_onnx(str(tiny_checkpoint.path), str(out), chunk_feature_frames=16)
    return out


def test_bench_sherpa_reports_equal_tokens(tiny_export, tiny_corpus, asr_cli):
    r = asr_cli("bench", "sherpa", "--model-dir", tiny_export, "--audio-dir", tiny_corpus / "test", "--max-utts", "3",
                "--methods", "greedy_search", "modified_beam_search")
    assert r.returncode == 0, r.stderr
    for method in ("greedy_search", "modified_beam_search"):
        assert re.search(rf"^{method}: sherpa_tokens_match=3/3 stream_rtf=", r.stdout, re.M), r.stdout


def test_bench_sherpa_without_a_test_set_says_what_to_pass(tiny_export, tmp_path, asr_cli):
    assert_user_error(asr_cli("bench", "sherpa", "--model-dir", tiny_export, "--audio-dir", tmp_path),
                      str(tmp_path), "no .flac files", "LibriSpeech-layout")



def test_bench_hotwords_leaves_no_temporary_files_when_it_fails(tiny_export, tiny_corpus, asr_cli, tmp_path,
                                                                monkeypatch):
    """The tiny model's 32-token vocabulary cannot spell every entity phrase of the synthetic corpus:
    a one-line error, and the folder holding the phrases for sherpa-onnx is gone."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    r = asr_cli("bench", "hotwords", "--model-dir", tiny_export, "--audio-dir", tiny_corpus / "test", "--max-utts", "2")
    assert_user_error(r, "hotwords.txt", "cannot spell")
    assert list(tmp_path.iterdir()) == []
