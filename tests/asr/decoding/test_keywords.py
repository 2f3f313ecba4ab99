"""Keyword spotting (asr.decoding.keywords, asr.streaming.keywords, ``asr kws``): the keywords file,
the graph's keyword fields, and detections equal to sherpa-onnx's ``KeywordSpotter`` on the same
exported model, audio and keywords."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import soundfile as sf

from asr.decoding.context_graph import ContextGraph
from asr.decoding.keywords import keyword_graph, read_keywords
from asr.errors import UserError
from tests.conftest import assert_user_error, tiny_flacs

SYMBOLS = {"<blk>": 0, "<sos/eos>": 1, "<unk>": 2, "\u2581HE": 3, "LL": 4, "O": 5, "\u2581W": 6, "OR": 7, "LD": 8}


def _encode(text: str) -> list[int]:
    """A stand-in BPE for the parser tests: HELLO -> ▁HE LL O, WORLD -> ▁W OR LD."""
    table = {"HELLO": [3, 4, 5], "WORLD": [6, 7, 8], "HOLA": [3, 2]}
    return [t for word in text.split() for t in table.get(word, [2])]


def test_keywords_file_text_tokens_and_options(tmp_path):
    path = tmp_path / "kw.txt"
    path.write_text("HELLO WORLD :2.5 #0.4 @greeting\n\n\u2581HE LL O\nWORLD :0 #0\n", encoding="utf-8")
    kws = read_keywords(path, SYMBOLS, _encode, unk_id=2)
    assert [(k.tokens, k.name, k.boost, k.threshold) for k in kws] == [
        ([3, 4, 5, 6, 7, 8], "greeting", 2.5, 0.4), ([3, 4, 5], "HE LL O".replace(" ", ""), None, None),
        ([6, 7, 8], "WORLD", None, None)]  # ':0' and '#0' mean the defaults, as in sherpa-onnx
    graph = keyword_graph(kws, default_boost=1.0, default_threshold=0.25)
    node = graph.root
    for t in [3, 4, 5]:
        node = node.next[t]
    assert graph.is_matched(node) is node and (node.level, node.ac_threshold, node.phrase) == (3, 0.25, "HELLO")
    for t in [6, 7, 8]:
        node = node.next[t]
    assert (node.level, node.ac_threshold, node.phrase, node.token_score) == (6, 0.4, "greeting", 2.5)
    assert graph.is_matched(graph.root.next[3]) is None


def test_a_keyword_inside_another_is_matched_through_the_output_link():
    graph = ContextGraph([[1, 2, 3], [2, 3]], 1.0, thresholds=[0.5, 0.6], names=["abc", "bc"])
    state = graph.root
    for t in [1, 2, 3]:
        _, state = graph.forward_one_step(state, t, strict=True)
    assert state.phrase == "abc" and graph.is_matched(state) is state
    _, state = graph.forward_one_step(graph.root, 2, strict=True)
    _, state = graph.forward_one_step(state, 3, strict=True)
    assert graph.is_matched(state).phrase == "bc"


@pytest.mark.parametrize("content, expected", [
    ("HELLO :x\n", "bad boost"), ("HELLO #2\n", "threshold '#2' must be"), (":1.5\n", "options with no keyword"),
    ("HELLO :1 WORLD\n", "after the options"), ("\u2581HE XX\n", "'XX' is not a token"), ("HOLA\n", "cannot spell"),
    ("\n\n", "no keywords"),
])
def test_bad_keywords_files(tmp_path, content, expected):
    path = tmp_path / "kw.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=expected) as e:
        read_keywords(path, SYMBOLS, _encode, unk_id=2)
    assert str(path) in str(e.value)


def test_unreadable_keywords_files(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("CAF\xc9\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        read_keywords(tmp_path / "latin1.txt", SYMBOLS, _encode)
    with pytest.raises(UserError, match="no such keywords file"):
        read_keywords(tmp_path / "missing.txt", SYMBOLS, _encode)


# ---- against sherpa-onnx's KeywordSpotter ------------------------------------------------------------

SHERPA_KWS = r"""
import json, sys
import numpy as np, sherpa_onnx, soundfile as sf
d, keywords, score, threshold, files = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5:]
kws = sherpa_onnx.KeywordSpotter(tokens=f"{d}/tokens.txt", encoder=f"{d}/encoder.onnx", decoder=f"{d}/decoder.onnx",
                                 joiner=f"{d}/joiner.onnx", keywords_file=keywords, num_threads=1, max_active_paths=4,
                                 keywords_score=score, keywords_threshold=threshold, num_trailing_blanks=1)
out = []
for f in files:
    x = sf.read(f, dtype="float32")[0]
    s = kws.create_stream()
    s.accept_waveform(16000, x)
    s.accept_waveform(16000, np.zeros(int(0.66 * 16000), np.float32))
    s.input_finished()
    found = []
    while kws.is_ready(s):
        kws.decode_stream(s)
        r = kws.keyword_spotter.get_result(s)
        if r.keyword:
            found.append([r.keyword, list(r.tokens), [round(t, 2) for t in r.timestamps]])
            kws.reset_stream(s)
    out.append(found)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def model_dir(tiny_checkpoint, tmp_path_factory):
    """The untrained tiny model made to emit now and then: its joiner sharpened 2x and its blank logit
    raised by 1 (greedy search then emits 39 tokens in 508 frames of the first six files, mostly
    ▁M ▁M and ▁M F), so keywords both start and end with trailing blanks. (conftest's emitting
    model emits on nearly every frame: a keyword would never be followed by blanks.)"""
    from asr.checkpoint import read_checkpoint, save_checkpoint
    from export.folder import export_onnx

    root = tmp_path_factory.mktemp("kws")
    ckpt = read_checkpoint(tiny_checkpoint.path)
    state = dict(ckpt["model"])
    state["joiner.output.bias"] = state["joiner.output.bias"].clone()
    state["joiner.output.bias"][0] += 1.0
    state["joiner.output.weight"] = state["joiner.output.weight"] * 2
    save_checkpoint({**ckpt, "model": state}, root / "sparse.pt")
    export_onnx(str(root / "sparse.pt"), str(root / "onnx"), chunk_feature_frames=16)
    return root / "onnx"


def _ours(model_dir, keywords, score, threshold, files):
    from asr.streaming.keywords import KeywordStream
    from asr.streaming.onnx import ENCODER_FRAME_S, OnnxTransducer
    from asr.tokenizer import Tokenizer

    model = OnnxTransducer(model_dir)
    graph = keyword_graph(read_keywords(keywords, {s: i for i, s in enumerate(model.symbols)},
                                        Tokenizer(model_dir / "bpe.model").encode, model.unk_id), score, threshold)
    out = []
    for f in files:
        stream = KeywordStream(model, graph)
        stream.accept_waveform(sf.read(f, dtype="float32")[0])
        stream.input_finished()
        # sherpa-onnx's timestamps count from the last reset: so do these
        out.append([[d.keyword, [model.symbols[t].replace("\u2581", " ") for t in d.tokens],  # sherpa-onnx shows a space
                      [round((t - d.origin) * ENCODER_FRAME_S, 2) for t in d.frames]] for d in stream.detections])
    return out


def test_detections_equal_sherpa_onnx(model_dir, tiny_corpus, tmp_path):
    """Token-form keywords (what sherpa-onnx reads) on the tiny corpus's audio through the emitting
    untrained model: the same keywords, tokens and times as sherpa-onnx's spotter, and enough of them
    for the comparison to mean something."""
    # what the model emits (see the fixture), with names, boosts, thresholds and a keyword inside another
    keywords = tmp_path / "keywords.txt"
    keywords.write_text("\u2581M \u2581M @MM :2 #0.02\n\u2581M F @MF\n\u2581M \u2581M F @MMF :1.5\nF N E @FNE #0.01\n"
                        "\u2581M E @ME :3 #0.2\n", encoding="utf-8")
    files = [str(f) for f in tiny_flacs(tiny_corpus)[:6]]
    p = subprocess.run([sys.executable, "-c", SHERPA_KWS, str(model_dir), str(keywords), "2.0", "0.05", *files],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-2000:]
    theirs = json.loads(p.stdout)
    ours = _ours(model_dir, keywords, 2.0, 0.05, files)
    assert ours == theirs
    assert sum(len(f) for f in ours) >= 3, f"too few detections for the comparison to mean anything: {ours}"


def test_cli_kws_stdin_equals_the_file(asr_cli, model_dir, tiny_corpus, tmp_path, monkeypatch):
    """The same audio as raw s16le PCM on stdin (fed as it is read) gives the file's detections."""
    import io

    keywords = tmp_path / "keywords.txt"
    keywords.write_text("\u2581M \u2581M F @MMF :1.5\nF N E @FNE #0.01\n", encoding="utf-8")
    flac = tiny_flacs(tiny_corpus)[0]
    from_file = [json.loads(x) for x in asr_cli("kws", model_dir, flac, "--keywords-file", keywords).stdout.splitlines()]
    assert from_file
    (tmp_path / "pcm").write_bytes(sf.read(flac, dtype="int16")[0].astype("<i2").tobytes())
    with open(tmp_path / "pcm", "rb") as f:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(f))
        r = asr_cli("kws", model_dir, "-", "--keywords-file", keywords)
    assert r.returncode == 0, r.stderr
    assert [{**json.loads(x), "stream": str(flac)} for x in r.stdout.splitlines()] == from_file
    assert_user_error(asr_cli("kws", model_dir, flac, "-", "--keywords-file", keywords), "'-' (stdin) must be the only")


def test_cli_kws(asr_cli, model_dir, tiny_corpus, tmp_path):
    keywords = tmp_path / "keywords.txt"
    keywords.write_text("\u2581M \u2581M :3 #0.01 @FIRST\n", encoding="utf-8")
    flac = tiny_flacs(tiny_corpus)[0]
    r = asr_cli("kws", model_dir, flac, "--keywords-file", keywords)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert lines and all(x["type"] == "keyword" and x["keyword"] == "FIRST" and x["stream"] == str(flac) for x in lines)
    assert all(x["start_s"] < x["end_s"] for x in lines)
    assert_user_error(asr_cli("kws", model_dir, flac, "--keywords-file", tmp_path / "none.txt"), "none.txt")
    assert_user_error(asr_cli("kws", model_dir, flac, "--keywords-file", keywords, "--keywords-threshold", "2"),
                      "--keywords-threshold 2")
