"""``asr stream`` and the streaming recognizer behind it (``asr.streaming.onnx``, ``asr.streaming.endpoint``).

* The CLI's final tokens equal ``OnnxStream``'s, the path that tests/export/test_sherpa.py checks against
  sherpa-onnx; stdin PCM (raw or with a wav header) gives the file's result; streams decoded
  together equal each stream alone.
* Endpointing: the rules on hand-made numbers and token sequences, then on audio. The untrained test
  model emits a token on nearly every frame, silence included, so the audio tests wrap it
  (:class:`GatedTransducer`): encoder frames computed from digital silence decode as blank. The
  speech is real tiny-corpus audio through the real exported graphs.
* Bad input: one ``error:`` line, exit 2, no traceback, no results printed.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import PcmReader
from asr.streaming.endpoint import EndpointConfig, EndpointRule, trailing_blanks
from asr.streaming.onnx import ENCODER_FRAME_S, OnnxRecognizer, OnnxStream, OnnxTransducer
from export.folder import export_onnx
from tests.conftest import _SUBPROCESS_ENV, assert_user_error, run_asr_subprocess, tiny_flacs

RATE = 16000
PIECE = 1600  # 100 ms, what a microphone delivers at a time
# fbank of digital silence is log(FLT_EPSILON) = -15.94 in every bin; any signal lies above.
SILENCE_LOG_MEL = -15.9


@pytest.fixture(scope="module")
def model_dir(emitting_checkpoint, tmp_path_factory):
    """The emitting tiny checkpoint (conftest) exported with decode_chunk_len 16 (4 encoder frames per call)."""
    out = tmp_path_factory.mktemp("stream") / "onnx"
    export_onnx(str(emitting_checkpoint), str(out), chunk_feature_frames=16)
    return out


@pytest.fixture(scope="module")
def wavs(tiny_corpus, tmp_path_factory):
    """Three tiny-corpus utterances as 16-bit wav files (of different lengths)."""
    root = tmp_path_factory.mktemp("wavs")
    out = []
    for f in tiny_flacs(tiny_corpus)[:3]:
        x, rate = sf.read(f, dtype="int16")
        out.append(root / (f.stem + ".wav"))
        sf.write(out[-1], x, rate, subtype="PCM_16")
    return out


def _read(path) -> np.ndarray:
    return sf.read(path, dtype="float32")[0]


def _lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def _finals(lines: list[dict], stream) -> list[dict]:
    return [r for r in lines if r["stream"] == str(stream) and r["type"] == "final"]


class GatedTransducer(OnnxTransducer):
    """The exported model, except that an encoder frame whose 4 new feature frames are all digital
    silence decodes as blank (its encoder output is zeroed as a mark, and the joiner's blank logit
    is raised for zero rows)."""

    def encode_chunk(self, x, state):
        enc, state = super().encode_chunk(x, state)  # (N, T', J)
        n, t = enc.shape[:2]
        new = x[:, self.chunking.window_feature_frames - self.chunking.chunk_feature_frames :]  # (N, decode_chunk_len, F)
        silent = (new.max(axis=2) < SILENCE_LOG_MEL).reshape(n, t, -1).all(axis=2)  # (N, T')
        enc = enc.clone()
        enc[torch.from_numpy(silent)] = 0.0
        return enc, state

    def join(self, enc, pred):
        logits = super().join(enc, pred).clone()  # (..., V)
        silent = (enc == 0).all(-1).expand(logits.shape[:-1])
        logits[..., 0] = torch.where(silent, torch.tensor(1e4), logits[..., 0])
        return logits


@pytest.fixture(scope="module")
def gated(model_dir):
    return GatedTransducer(model_dir)


def _alone(model, x, method="greedy", **kw) -> OnnxStream:
    s = OnnxStream(model, method, 4, **kw)
    s.accept_waveform(x)
    s.input_finished()
    return s


# ---- the sherpa-equal path, stdin, batching ------------------------------------------------------


@pytest.mark.parametrize("method", ["greedy", "modified_beam_search"])
def test_cli_finals_equal_onnx_stream(asr_cli, model_dir, wavs, method):
    """Three files decoded together by 'asr stream' (100 ms pieces, batched) give each file the
    tokens OnnxStream gives it alone, fed at once: the tokens tests/export/test_sherpa.py checks against
    sherpa-onnx."""
    r = asr_cli("stream", model_dir, *wavs, "--decoding-method", method, "--no-endpoint")
    assert r.returncode == 0, r.stderr
    lines = _lines(r.stdout)
    model = OnnxTransducer(model_dir)
    for w in wavs:
        alone = _alone(model, _read(w), method)
        (final,) = _finals(lines, w)
        assert final["tokens"] == [model.symbols[t] for t in alone.tokens]
        assert final["text"] == alone.text and final["reason"] == "end"
        assert len(alone.tokens) >= 10, "too few tokens for the comparison to mean anything"
    assert len({tuple(_finals(lines, w)[0]["tokens"]) for w in wavs}) == 3


@pytest.mark.parametrize("method", ["greedy", "modified_beam_search"])
def test_batched_streams_equal_each_alone(gated, wavs, method):
    """Streams of different lengths, each speech + 4 s of silence + speech (two segments), fed 100 ms at
    a time and decoded together == each alone fed at once: tokens, frames, segments, endpoints."""
    audio = [np.concatenate([_read(w), np.zeros(4 * RATE, np.float32), _read(w)[: RATE // 2]]) for w in wavs]
    rec = OnnxRecognizer(gated, method, 4, endpoint=EndpointConfig())
    streams = [rec.create_stream() for _ in audio]
    for start in range(0, max(map(len, audio)), PIECE):
        for s, x in zip(streams, audio):
            if start < len(x):
                s.accept_waveform(x[start : start + PIECE])
            elif not s.input_done:
                s.input_finished()
        rec.decode(streams)
    for s in streams:
        if not s.input_done:
            s.input_finished()
    rec.decode(streams)
    assert max(c.batch for c in rec.calls) == 3 and min(c.batch for c in rec.calls) < 3
    for s, x in zip(streams, audio):
        alone = _alone(gated, x, method, endpoint=EndpointConfig())
        assert s.finished and alone.finished
        key = [(r.segment, r.tokens, r.frames, r.reason, r.start_s, r.end_s) for r in s.finals]
        assert key == [(r.segment, r.tokens, r.frames, r.reason, r.start_s, r.end_s) for r in alone.finals]
        assert [(e.rule, e.time_s) for e in s.endpoints] == [(e.rule, e.time_s) for e in alone.endpoints]
        assert [r.reason for r in s.finals] == ["rule2", "end"], [(e.rule, e.time_s) for e in s.endpoints]
        assert s.first_token.frame == alone.first_token.frame
        assert 0 < s.first_token.received_s <= 1.0  # decoded while the audio was still arriving


@pytest.fixture
def stdin_from(monkeypatch, tmp_path):
    """Make sys.stdin read the given bytes (a regular file: any size, no pipe buffer to fill)."""
    opened = []

    def set_stdin(data: bytes) -> None:
        path = tmp_path / f"stdin{len(opened)}.bin"
        path.write_bytes(data)
        opened.append(open(path, "rb"))
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(opened[-1]))

    yield set_stdin
    for f in opened:
        f.close()


def test_stdin_equals_file(asr_cli, model_dir, wavs, stdin_from):
    """Raw s16le on stdin prints exactly the file's lines; a wav piped whole (header parsed) gives
    the file's finals."""
    w = wavs[0]
    from_file = _lines(asr_cli("stream", model_dir, w).stdout)
    pcm = sf.read(w, dtype="int16")[0].astype("<i2").tobytes()
    stdin_from(pcm)
    r = asr_cli("stream", model_dir, "-")
    assert r.returncode == 0, r.stderr
    assert [{**line, "stream": str(w)} for line in _lines(r.stdout)] == from_file
    stdin_from(w.read_bytes())
    r = asr_cli("stream", model_dir, "-")
    assert r.returncode == 0, r.stderr
    assert [{**line, "stream": str(w)} for line in _finals(_lines(r.stdout), "-")] == _finals(from_file, w)


def test_stdin_pipe_fresh_interpreter(model_dir, wavs):
    """The live path for real: a fresh 'python -m asr.cli stream MODEL -' reading a pipe."""
    w = wavs[1]
    pcm = sf.read(w, dtype="int16")[0].astype("<i2").tobytes()
    p = subprocess.run([sys.executable, "-m", "asr.cli", "stream", str(model_dir), "-", "--no-partials"], input=pcm,
                       capture_output=True, env=_SUBPROCESS_ENV, timeout=120)
    assert p.returncode == 0 and p.stderr == b"", p.stderr.decode()
    (final,) = _finals(_lines(p.stdout.decode()), "-")
    alone = _alone(OnnxTransducer(model_dir), _read(w))
    assert final["tokens"] == [alone.model.symbols[t] for t in alone.tokens]


def test_json_lines_schema_and_word_timestamps(asr_cli, model_dir, wavs, tmp_path, monkeypatch):
    """Two segments per file (speech, 3 s of silence, speech): every line has the documented keys;
    partials come before their final; words are ordered and inside their segment, across segments."""
    monkeypatch.setattr("asr.streaming.jsonl.OnnxTransducer", GatedTransducer)  # what asr stream loads
    files = []
    for w in wavs[:2]:
        x = _read(w)
        files.append(tmp_path / w.name)
        sf.write(files[-1], np.concatenate([x, np.zeros(3 * RATE, np.float32), x]), RATE, subtype="PCM_16")
    r = asr_cli("stream", model_dir, *files)
    assert r.returncode == 0, r.stderr
    lines = _lines(r.stdout)
    keys = {"stream", "segment", "type", "text", "start_s", "end_s", "words", "tokens"}
    for line in lines:
        assert set(line) == keys | ({"reason"} if line["type"] == "final" else set()), line
        assert line["type"] in ("partial", "final") and isinstance(line["text"], str)
        assert all(set(w) == {"word", "start_s", "end_s"} for w in line["words"])
        assert " ".join(w["word"] for w in line["words"]) == " ".join(line["text"].split())
    for f in files:
        mine = [line for line in lines if line["stream"] == str(f)]
        finals = _finals(lines, f)
        assert [(r["segment"], r["reason"]) for r in finals] == [(0, "rule2"), (1, "end")]
        assert mine[-1] is finals[-1] and mine[0]["type"] == "partial"
        assert finals[1]["start_s"] == finals[0]["end_s"]  # the next segment starts at the endpoint
        previous_end = 0.0
        for r in finals:
            assert r["words"], r
            assert r["start_s"] <= r["words"][0]["start_s"] and r["words"][-1]["end_s"] <= r["end_s"] + 1e-9
            for w in r["words"]:
                assert previous_end <= w["start_s"] < w["end_s"], r["words"]
                previous_end = w["end_s"]
        partials = [line for line in mine if line["type"] == "partial"]
        assert all(p["segment"] in (0, 1) for p in partials)
        assert [p["segment"] for p in partials] == sorted(p["segment"] for p in partials)


# ---- endpointing: the rules by hand ----------------------------------------------------------------


def test_endpoint_rules_hand_checked():
    """Defaults: rule1 2.4 s of silence even with nothing decoded, rule2 1.2 s after something,
    rule3 a 20 s segment. segment_frames are 10 ms frames, trailing blanks 40 ms encoder frames."""
    cfg = EndpointConfig()
    assert cfg.detect(segment_frames=236, trailing_blanks=59) is None  # nothing decoded, 2.36 s
    assert cfg.detect(segment_frames=240, trailing_blanks=60) == "rule1"  # nothing decoded, 2.40 s
    assert cfg.detect(segment_frames=200, trailing_blanks=29) is None  # decoded, 1.16 s of silence
    assert cfg.detect(segment_frames=200, trailing_blanks=30) == "rule2"  # decoded, 1.20 s
    assert cfg.detect(segment_frames=120, trailing_blanks=30) is None  # all silence: rule2 needs speech
    assert cfg.detect(segment_frames=1999, trailing_blanks=0) is None
    assert cfg.detect(segment_frames=2000, trailing_blanks=0) == "rule3"
    custom = EndpointConfig(EndpointRule(False, 1.0, 0.0), EndpointRule(True, 0.5, 0.0), EndpointRule(False, 0.0, 3.0))
    assert custom.detect(100, 25) == "rule1" and custom.detect(200, 13) == "rule2" and custom.detect(300, 1) == "rule3"
    assert trailing_blanks([], segment_start=10, segment_end=30) == 20
    assert trailing_blanks([3, 12, 17], segment_start=10, segment_end=30) == 12
    assert trailing_blanks([3, 7], segment_start=10, segment_end=30) == 20  # tokens of earlier segments


def test_endpoint_zero_rule_refused():
    from asr.errors import UserError

    with pytest.raises(UserError, match="rule3"):
        EndpointConfig(rule3=EndpointRule(False, 0.0, 0.0))


def _first_endpoint(emissions: str, cfg: EndpointConfig, frames_per_call: int = 4) -> tuple[str, int] | None:
    """Check after every encoder call of ``frames_per_call`` encoder frames, as the recognizer does:
    'x' is a frame with a token, '.' a blank frame. -> (rule, encoder frames decoded) or None."""
    tokens = [t for t, c in enumerate(emissions) if c == "x"]
    for end in range(frames_per_call, len(emissions) + 1, frames_per_call):
        rule = cfg.detect(end * 4, trailing_blanks([t for t in tokens if t < end], 0, end))
        if rule is not None:
            return rule, end
    return None


def test_endpoint_on_token_sequences():
    cfg = EndpointConfig()
    # Last token on frame 4: 30 blank frames after it end at frame 35 -> the call ending at 36.
    assert _first_endpoint("x..x" + "x" + "." * 40, cfg) == ("rule2", 36)
    assert _first_endpoint("x..x" + "x" + "." * 29, cfg) is None  # 1.16 s of silence, input over
    # Nothing decoded: 2.4 s = 60 blank frames -> the call ending at frame 60.
    assert _first_endpoint("." * 100, cfg) == ("rule1", 60)
    # A token every 20 frames never leaves 1.2 s of silence; the segment reaches 20 s at frame 500.
    assert _first_endpoint(("x" + "." * 19) * 30, cfg) == ("rule3", 500)


# ---- endpointing on audio ----------------------------------------------------------------------------


def _speech(wavs) -> np.ndarray:
    return _read(wavs[0])


def _expected_endpoint_s(last_token_frame: int, trailing_s: float, frames_per_call: int) -> float:
    """The end of the first encoder call after which `trailing_s` of blank frames follow the last token."""
    call = 0
    while call * frames_per_call - (last_token_frame + 1) < round(trailing_s / ENCODER_FRAME_S):
        call += 1
    return call * frames_per_call * ENCODER_FRAME_S


@pytest.mark.parametrize("rule", ["rule2", "rule1"])
def test_endpoint_after_speech(gated, wavs, rule):
    """Speech, then 3 s of zeros: rule2 ends the segment 1.2 s after the last token; with rule2 off
    (60 s), rule1 does after 2.4 s. Either way at the end of the first encoder call that completes
    the trailing silence, and that silence started where the speech ended."""
    x = _speech(wavs)
    cfg = EndpointConfig() if rule == "rule2" else EndpointConfig(rule2=EndpointRule(True, 60.0, 0.0))
    trailing_s = 1.2 if rule == "rule2" else 2.4
    s = _alone(gated, np.concatenate([x, np.zeros(3 * RATE, np.float32)]), endpoint=cfg)
    first = s.finals[0]
    assert first.reason == rule and first.segment == 0 and len(first.tokens) >= 10
    assert s.endpoints[0].rule == rule and s.endpoints[0].had_tokens
    frames_per_call = gated.chunking.chunk_encoder_frames
    assert first.end_s == pytest.approx(_expected_endpoint_s(first.frames[-1], trailing_s, frames_per_call), abs=1e-9)
    speech_s = len(x) / RATE
    assert speech_s + trailing_s - 0.1 <= first.end_s <= speech_s + trailing_s + frames_per_call * ENCODER_FRAME_S + 0.1
    assert s.tokens == first.tokens  # nothing decoded in the silence after it


def test_rule1_on_silence_only_after_2_4_s(gated):
    rec = OnnxRecognizer(gated, endpoint=EndpointConfig())
    s = rec.create_stream()
    silence = np.zeros(PIECE, np.float32)
    for _ in range(24):  # 2.4 s in: the encoder has not consumed 2.4 s yet (T > decode_chunk_len)
        s.accept_waveform(silence)
        rec.decode([s])
    assert s.endpoints == []
    for _ in range(6):
        s.accept_waveform(silence)
        rec.decode([s])
    assert [(e.rule, e.time_s, e.had_tokens) for e in s.endpoints] == [("rule1", 2.4, False)]
    assert 2.4 < s.endpoints[0].received_s <= 2.4 + (gated.chunking.window_feature_frames + 1) * 0.01 + PIECE / RATE
    s.input_finished()
    rec.decode([s])
    assert s.finished and [(r.segment, r.reason, r.text) for r in s.finals] == [(0, "end", "")]


def test_rule3_on_long_input(gated, wavs):
    """Over 21.5 s of speech without pauses: rule3 cuts the segment at exactly 20 s; decoding goes on."""
    speech = _speech(wavs)
    x = np.tile(speech, -(-int(21.5 * RATE) // len(speech)))
    assert 21.5 <= len(x) / RATE < 40.0
    s = _alone(gated, x, endpoint=EndpointConfig())
    assert [(r.segment, r.reason) for r in s.finals] == [(0, "rule3"), (1, "end")]
    assert s.finals[0].end_s == pytest.approx(20.0) and s.finals[1].start_s == pytest.approx(20.0)
    assert s.finals[1].frames[0] >= 20.0 / ENCODER_FRAME_S


def test_greedy_segments_keep_decoder_context(gated, wavs):
    """At an endpoint after speech the decoder keeps its context and the encoder its state, so with
    greedy search the segments' tokens together are the tokens of decoding without endpoints."""
    x = _speech(wavs)
    audio = np.concatenate([x, np.zeros(2 * RATE, np.float32), x])
    cut = _alone(gated, audio, endpoint=EndpointConfig())
    assert [r.reason for r in cut.finals] == ["rule2", "end"]
    assert cut.tokens == _alone(gated, audio).tokens


# sherpa-onnx's own client loop with endpointing: decode a chunk, check the endpoint, reset.
SHERPA_SEGMENTS = """
import json, sys
import numpy as np, soundfile as sf, sherpa_onnx
d, method, rule3 = sys.argv[1], sys.argv[2], float(sys.argv[3])
rec = sherpa_onnx.OnlineRecognizer.from_transducer(
    tokens=f"{d}/tokens.txt", encoder=f"{d}/encoder.onnx", decoder=f"{d}/decoder.onnx", joiner=f"{d}/joiner.onnx",
    num_threads=1, sample_rate=16000, feature_dim=80, low_freq=20.0, high_freq=-400.0, dither=0.0,
    decoding_method=method, max_active_paths=4, enable_endpoint_detection=True, rule3_min_utterance_length=rule3)
out = []
for f in sys.argv[4:]:
    x, sr = sf.read(f, dtype="float32")
    s = rec.create_stream()
    s.accept_waveform(sr, x)
    s.accept_waveform(sr, np.zeros(int(0.66 * sr), np.float32))
    s.input_finished()
    segments = []
    while rec.is_ready(s):
        rec.decode_stream(s)
        if rec.is_endpoint(s):
            segments.append(rec.get_result_all(s))
            rec.reset(s)
    segments.append(rec.get_result_all(s))
    out.append([{"tokens": r.tokens, "timestamps": r.timestamps, "start_time": r.start_time, "segment": r.segment}
                for r in segments if r.tokens])
print(json.dumps(out))
"""


@pytest.mark.parametrize("method", ["greedy", "modified_beam_search"])
def test_segments_equal_sherpa_onnx(model_dir, wavs, method):
    """With rule3 at 1 s (the test model never pauses), sherpa-onnx's recognizer cuts every file into
    segments; ours gives the same segments: tokens (so the same reset of the decoder context and
    of the beam), segment numbers, start times and token timestamps."""
    pytest.importorskip("sherpa_onnx")
    sherpa_method = "greedy_search" if method == "greedy" else method
    p = subprocess.run([sys.executable, "-c", SHERPA_SEGMENTS, str(model_dir), sherpa_method, "1.0", *map(str, wavs)],
                       capture_output=True, text=True, env=_SUBPROCESS_ENV, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    model = OnnxTransducer(model_dir)
    cfg = EndpointConfig(rule3=EndpointRule(False, 0.0, 1.0))
    for w, theirs in zip(wavs, json.loads(p.stdout)):
        ours = _alone(model, _read(w), method, endpoint=cfg).finals
        assert len(ours) >= 2 and [r.reason for r in ours[:-1]] == ["rule3"] * (len(ours) - 1)
        assert [[model.symbols[t].replace("\u2581", " ") for t in r.tokens] for r in ours] == [t["tokens"] for t in theirs]
        assert [r.segment for r in ours] == [t["segment"] for t in theirs]
        for r, t in zip(ours, theirs):
            assert r.start_s == pytest.approx(t["start_time"], abs=1e-5)
            relative = np.array(r.frames) * ENCODER_FRAME_S - r.start_s  # sherpa-onnx: from the segment start
            assert np.abs(relative - np.array(t["timestamps"])).max() < 1e-5


# ---- hotwords ----------------------------------------------------------------------------------------


def test_hotwords_reach_the_search(model_dir, wavs, tmp_path):
    """--hotwords-file builds a context graph from the folder's bpe.model and every stream's beam
    search uses it (the graph itself is tested with asr.decoding.context_graph)."""
    from asr.decoding.context_graph import ContextGraph
    from asr.streaming.jsonl import build_recognizer

    hotwords = tmp_path / "hotwords.txt"
    # The bonus ranks only hypotheses already among the acoustic top-k (sherpa-onnx's design): the
    # phrases start with "M", which the untrained model emits on any audio, so the bonus must show.
    hotwords.write_text("MOM\nCALL MOM :4.0\n")
    rec = build_recognizer(str(model_dir), "modified_beam_search", 4, str(hotwords), 20.0)
    assert isinstance(rec.context_graph, ContextGraph) and rec.context_graph.default_score == 20.0
    s = rec.create_stream()
    assert s.search_state.context_graph is rec.context_graph
    x = _read(wavs[0])
    s.accept_waveform(x)
    s.input_finished()
    rec.decode([s])
    plain = _alone(rec.model, x, "modified_beam_search")
    assert s.tokens != plain.tokens  # a bonus of 20 per token changes what the untrained model picks


def test_cli_hotwords(asr_cli, model_dir, wavs, tmp_path):
    hotwords = tmp_path / "hotwords.txt"
    hotwords.write_text("MOM :20\n")  # starts with a token the untrained model emits (see above)
    with_hw = asr_cli("stream", model_dir, wavs[0], "--decoding-method", "modified_beam_search", "--hotwords-file", hotwords)
    plain = asr_cli("stream", model_dir, wavs[0], "--decoding-method", "modified_beam_search")
    assert with_hw.returncode == 0 and plain.returncode == 0, with_hw.stderr
    assert _finals(_lines(with_hw.stdout), wavs[0]) != _finals(_lines(plain.stdout), wavs[0])


# ---- shallow fusion ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lm_file(model_dir, tmp_path_factory):
    """A 3-gram model over the folder's tokens, counted on text of one repeated word, so that at a large
    scale it must change what the untrained model picks."""
    from asr.decoding.ngram_lm import count_text

    folder = tmp_path_factory.mktemp("lm")
    (folder / "text.txt").write_text("MOM MOM MOM\n" * 50)
    path = folder / "lm.npz"
    count_text([folder / "text.txt"], model_dir / "bpe.model", 3).save(path)
    return path


def test_cli_lm_equals_onnx_stream_with_the_lm(asr_cli, model_dir, wavs, lm_file):
    """'asr stream --lm' (100 ms pieces) gives the tokens an OnnxStream with the same fusion gives
    fed at once; the fusion changes them (the search itself is tested against a reference in
    tests/asr/decoding/test_search.py)."""
    from asr.decoding.ngram_lm import LmFusion, NgramLm

    args = ("stream", model_dir, wavs[0], "--decoding-method", "modified_beam_search", "--no-endpoint")
    r = asr_cli(*args, "--lm", lm_file, "--lm-scale", "2.0")
    assert r.returncode == 0, r.stderr
    model = OnnxTransducer(model_dir)
    fused = _alone(model, _read(wavs[0]), "modified_beam_search", lm=LmFusion(NgramLm.load(lm_file), 2.0))
    (final,) = _finals(_lines(r.stdout), wavs[0])
    assert final["tokens"] == [model.symbols[t] for t in fused.tokens]
    assert fused.tokens != _alone(model, _read(wavs[0]), "modified_beam_search").tokens


def test_cli_lm_bad_input(asr_cli, model_dir, wavs, lm_file, tmp_path):
    assert_user_error(asr_cli("stream", model_dir, wavs[0], "--lm", lm_file), "--lm", "modified_beam_search")
    assert_user_error(asr_cli("stream", model_dir, wavs[0], "--decoding-method", "modified_beam_search", "--lm",
                              tmp_path / "missing.npz"), "missing.npz")
    assert_user_error(asr_cli("stream", model_dir, wavs[0], "--decoding-method", "modified_beam_search", "--lm",
                              lm_file, "--lm-scale", "nan"), "--lm-scale")


# ---- bad input -------------------------------------------------------------------------------------


def _wav(tmp_path, name, rate, channels):
    path = tmp_path / name
    x = 0.1 * np.random.default_rng(0).standard_normal((rate, channels))
    sf.write(path, x, rate, subtype="PCM_16")
    return path


def test_wrong_sample_rate(asr_cli, model_dir, wavs, tmp_path):
    bad = _wav(tmp_path, "8k.wav", 8000, 1)
    r = asr_cli("stream", model_dir, wavs[0], bad)
    line = assert_user_error(r, str(bad), "8000 Hz", "16000 Hz", "sox", "ffmpeg")
    assert "-r 16000" in line and r.stdout == ""  # checked before anything is decoded


def test_stereo(asr_cli, model_dir, tmp_path):
    bad = _wav(tmp_path, "stereo.wav", RATE, 2)
    r = asr_cli("stream", model_dir, bad)
    assert_user_error(r, str(bad), "2 channels", "mono", "-c 1")
    assert r.stdout == ""


def test_missing_and_unreadable_file(asr_cli, model_dir, tmp_path):
    assert_user_error(asr_cli("stream", model_dir, tmp_path / "nope.wav"), "nope.wav", "no such audio file")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    assert_user_error(asr_cli("stream", model_dir, junk), str(junk), "cannot read audio")


def test_incomplete_or_missing_model_folder(asr_cli, model_dir, wavs, tmp_path):
    partial = tmp_path / "onnx"
    partial.mkdir()
    for name in ("encoder.onnx", "decoder.onnx", "tokens.txt"):
        (partial / name).write_bytes((model_dir / name).read_bytes())
    r = asr_cli("stream", partial, wavs[0])
    assert_user_error(r, str(partial), "missing joiner.onnx", "asr export")
    assert r.stdout == ""
    assert_user_error(asr_cli("stream", tmp_path / "none", wavs[0]), str(tmp_path / "none"), "no such model folder")


def _folder_copy(model_dir, tmp_path):
    copy = tmp_path / "onnx"
    copy.mkdir()
    for f in model_dir.iterdir():
        if f.is_file():
            (copy / f.name).write_bytes(f.read_bytes())
    return copy


@pytest.mark.parametrize("damage, expected", [
    ("short-tokens", "disagree on their vocabularies"),
    ("latin1-tokens", "not UTF-8"),
    ("joiner-of-another-export", "different models"),
])
def test_model_folder_that_does_not_hold_together(asr_cli, model_dir, tiny_checkpoint, wavs, tmp_path, damage, expected):
    folder = _folder_copy(model_dir, tmp_path)
    tokens = folder / "tokens.txt"
    if damage == "short-tokens":
        tokens.write_text("".join(tokens.read_text().splitlines(keepends=True)[:-3]))
    elif damage == "latin1-tokens":
        tokens.write_bytes(tokens.read_bytes() + "\xe9t\xe9 99\n".encode("latin-1"))
    else:  # the same shapes, other weights: the untrained checkpoint the emitting one was made from
        other = tmp_path / "other"
        export_onnx(str(tiny_checkpoint.path), str(other), chunk_feature_frames=16)
        (folder / "joiner.onnx").write_bytes((other / "joiner.onnx").read_bytes())
    r = asr_cli("stream", folder, wavs[0])
    assert_user_error(r, str(folder), expected)
    assert r.stdout == ""


def test_garbage_bpe_model_with_hotwords(asr_cli, model_dir, wavs, tmp_path):
    folder = _folder_copy(model_dir, tmp_path)
    (folder / "bpe.model").write_bytes(b"\x00garbage" * 100)
    hotwords = tmp_path / "hotwords.txt"
    hotwords.write_text("PLAY MUSIC\n")
    r = asr_cli("stream", folder, wavs[0], "--decoding-method", "modified_beam_search", "--hotwords-file", hotwords)
    assert_user_error(r, str(folder / "bpe.model"))


def test_hotwords_with_greedy(asr_cli, model_dir, wavs, tmp_path):
    hotwords = tmp_path / "hotwords.txt"
    hotwords.write_text("PLAY MUSIC\n")
    assert_user_error(asr_cli("stream", model_dir, wavs[0], "--hotwords-file", hotwords), "--hotwords-file",
                      "modified_beam_search")


def test_bad_options(asr_cli, model_dir, wavs):
    assert_user_error(asr_cli("stream", model_dir, wavs[0], "--rule2-min-trailing-silence", "-1"),
                      "--rule2-min-trailing-silence")
    assert_user_error(asr_cli("stream", model_dir, wavs[0], "-"), "'-' (stdin) must be the only input")


def _mpeg_frames(count: int = 8) -> bytes:
    """An MP3 stream without an ID3 tag: frames of MPEG-1 layer III at 128 kbit/s and 44.1 kHz (header
    FF FB 90 64, 417 bytes each) with silent (zero) payloads."""
    return (b"\xff\xfb\x90\x64" + bytes(413)) * count


@pytest.mark.parametrize("data, expected", [
    (b"hello, this is a text file and not audio\n" * 20, ["looks like text"]),
    (b"short text\n", ["looks like text"]),
    (b"fLaC\x00\x00\x00\x22" + bytes(range(256)) * 4, ["FLAC", "ffmpeg"]),
    (bytes(range(256)) * 4 + b"\x01", ["1025 bytes", "odd"]),
    (b"", ["no audio received"]),
    (("\ufeff" + "hello, this is a text file and not audio\n" * 20).encode("utf-8"), ["looks like text"]),
    (("hello, this is UTF-16 text and not audio\n" * 20).encode("utf-16"), ["looks like text"]),
    (("hello, this is UTF-16 text and not audio\n" * 20).encode("utf-16-le"), ["looks like text"]),
    (("voil\xe0 un fichier texte en Latin-1, d\xe9j\xe0 vu\n" * 20).encode("latin-1"), ["looks like text"]),
    (_mpeg_frames(), ["MP3", "ffmpeg"]),
], ids=["text", "short-text", "flac", "odd-bytes", "empty", "utf8-bom", "utf16", "utf16le-no-bom", "latin1", "mp3-no-tag"])
def test_garbage_on_stdin(asr_cli, model_dir, stdin_from, data, expected):
    stdin_from(data)
    r = asr_cli("stream", model_dir, "-")
    assert_user_error(r, "stdin", *expected)
    assert '"final"' not in r.stdout


def test_non_finite_samples_in_a_file(asr_cli, model_dir, tmp_path):
    x = np.zeros(RATE, dtype=np.float32)
    x[8000] = np.nan
    wav = tmp_path / "nan.wav"
    sf.write(wav, x, RATE, subtype="FLOAT")
    r = asr_cli("stream", model_dir, wav)
    assert_user_error(r, str(wav), "sample 8000 (at 0.500 s) is nan")
    assert r.stdout == ""


def test_closed_stdin(asr_cli, model_dir, monkeypatch):
    monkeypatch.setattr(sys, "stdin", None)  # what Python makes of a closed file descriptor 0 ('<&-')
    assert_user_error(asr_cli("stream", model_dir, "-"), "stdin is closed")


@pytest.mark.parametrize("first", [-1, -1025], ids=["ff-ff", "ff-fb"])
def test_pcm_that_starts_like_an_mpeg_header_is_pcm(first):
    """Raw PCM whose first bytes pass an MPEG frame header's checks (FF FF or FF FB, then a valid bitrate/rate
    byte: the sample 16) is still PCM: the frame after it is not there."""
    rng = np.random.default_rng(0)
    samples = np.concatenate([[first, 16], rng.integers(-30, 30, 3000)]).astype("<i2")
    reader = PcmReader()
    out = np.concatenate([reader.feed(samples[:1000].tobytes()), reader.feed(samples[1000:].tobytes()), reader.finish()])
    np.testing.assert_array_equal(out, samples / 32768.0)


@pytest.mark.parametrize("seed", range(5))
def test_loud_noise_is_not_text(seed):
    samples = np.random.default_rng(seed).integers(-32768, 32767, 4000).astype("<i2")
    reader = PcmReader()
    assert reader.feed(samples.tobytes()).size + reader.finish().size == 4000


def test_wav_on_stdin_at_wrong_rate(asr_cli, model_dir, stdin_from, tmp_path):
    stdin_from(_wav(tmp_path, "8k.wav", 8000, 1).read_bytes())
    assert_user_error(asr_cli("stream", model_dir, "-"), "stdin", "8000 Hz", "16000 Hz", "sox")
    stdin_from(_wav(tmp_path, "stereo.wav", RATE, 2).read_bytes())
    assert_user_error(asr_cli("stream", model_dir, "-"), "stdin", "2 channels")
    stdin_from(_wav(tmp_path, "ok.wav", RATE, 1).read_bytes()[:30])
    assert_user_error(asr_cli("stream", model_dir, "-"), "stdin", "'data' chunk")


def test_error_in_fresh_interpreter(model_dir, tmp_path):
    """Import-time warnings would break the one-line contract; only a real process shows them."""
    bad = _wav(tmp_path, "44k.wav", 44100, 1)
    assert_user_error(run_asr_subprocess("stream", model_dir, bad), "44100 Hz")


# ---- long streams: settled finals ----------------------------------------------------------------------


def _fed(model, x, method, **kw) -> tuple[OnnxStream, float]:
    """``x`` fed 100 ms at a time, as 'asr stream' feeds it; (stream, the longest a partial result lasted, s)."""
    rec = OnnxRecognizer(model, method, 4, **kw)
    s, longest = rec.create_stream(), 0.0
    for start in range(0, len(x), PIECE):
        s.accept_waveform(x[start : start + PIECE])
        rec.decode([s])
        p = s.partial()
        longest = max(longest, p.end_s - p.start_s)
    s.input_finished()
    rec.decode([s])
    return s, longest


def _check_settled(model, stream) -> None:
    finals = stream.finals
    reasons = [r.reason for r in finals]
    assert len(reasons) >= 5 and reasons[-1] == "end" and set(reasons[:-1]) == {"settled"}
    assert [r.segment for r in finals] == list(range(len(reasons))) and finals[0].start_s == 0.0
    for a, b in zip(finals, finals[1:]):
        assert b.start_s == a.end_s and a.end_s == pytest.approx((a.frames[-1] + 1) * ENCODER_FRAME_S)
        assert model.symbols[b.tokens[0]].startswith("\u2581")
        assert a.text == model.text(a.tokens) and a.text.split() == [w.word for w in a.words]


def test_settled_finals_cut_an_unendpointed_stream_without_changing_it(model_dir, wavs):
    """Greedy search without endpoints: ``max_segment_s`` cuts the result into finals at whole words;
    together they hold the tokens of the one unbroken segment, each settled final ends where a word
    starts, the next starts where it ended, and a partial result never lasts much past max_segment_s."""
    model = OnnxTransducer(model_dir)
    speech = np.concatenate([_read(w) for w in wavs])
    x = np.tile(speech, -(-int(24 * RATE) // len(speech)))
    whole, whole_longest = _fed(model, x, "greedy")
    cut, longest = _fed(model, x, "greedy", max_segment_s=2.0)
    assert cut.tokens == whole.tokens and len(whole.tokens) > 100
    assert [r.reason for r in whole.finals] == ["end"] and whole_longest > 20
    _check_settled(model, cut)
    assert longest < 2.0 + 1.0


def test_settled_finals_bound_beam_search(model_dir, wavs):
    """Modified beam search: the untrained test model keeps hypotheses that disagree about old words, so
    settled finals must drop them (``forced_agreements``) to keep partial results within about twice
    max_segment_s; the finals still read as one result, cut at whole words."""
    model = OnnxTransducer(model_dir)
    speech = np.concatenate([_read(w) for w in wavs])
    x = np.tile(speech, -(-int(24 * RATE) // len(speech)))
    cut, longest = _fed(model, x, "modified_beam_search", max_segment_s=2.0)
    _check_settled(model, cut)
    assert cut.forced_agreements > 0 and longest < 2 * 2.0 + 1.0
    assert cut.tokens == [t for r in cut.finals for t in r.tokens]


@pytest.mark.parametrize("method, max_segment_s", [("greedy", 2.0), ("modified_beam_search", 6.0)])
def test_settled_finals_leave_the_endpoints_alone(gated, wavs, method, max_segment_s):
    """With endpointing on (rule3 out of reach) settled finals cut the long stretches of speech, and the
    endpoints are the ones without them: same rules at the same times, same tokens in all. (Beam search
    at 6 s: these stretches are too short for hypotheses to be dropped.)"""
    speech = np.concatenate([_read(w) for w in wavs])
    talk = np.tile(speech, -(-int(9 * RATE) // len(speech)))[: 9 * RATE]
    x = np.concatenate([talk, np.zeros(2 * RATE, np.float32), talk])
    cfg = EndpointConfig(rule3=EndpointRule(False, 0.0, 1000.0))
    plain, _ = _fed(gated, x, method, endpoint=cfg)
    cut, _ = _fed(gated, x, method, endpoint=cfg, max_segment_s=max_segment_s)
    assert [r.reason for r in plain.finals] == ["rule2", "end"] and cut.forced_agreements == 0
    assert [(e.rule, e.time_s, e.had_tokens) for e in cut.endpoints] == [(e.rule, e.time_s, e.had_tokens) for e in plain.endpoints]
    assert cut.tokens == plain.tokens
    reasons = [r.reason for r in cut.finals]
    assert reasons.count("settled") >= 2 and reasons[-1] == "end" and "rule2" in reasons
    assert [r.segment for r in cut.finals] == list(range(len(reasons)))


def test_cli_settled_finals(asr_cli, model_dir, wavs, tmp_path):
    """'asr stream --no-endpoint' prints settled finals every --max-segment-length seconds (0: never)."""
    speech = np.concatenate([_read(w) for w in wavs])
    long_wav = tmp_path / "long.wav"
    sf.write(long_wav, np.tile(speech, -(-int(12 * RATE) // len(speech))), RATE, subtype="PCM_16")
    finals = {}
    for seconds in ("3", "0"):
        r = asr_cli("stream", model_dir, long_wav, "--no-endpoint", "--max-segment-length", seconds)
        assert r.returncode == 0, r.stderr
        finals[seconds] = _finals(_lines(r.stdout), long_wav)
    assert [f["reason"] for f in finals["0"]] == ["end"]
    assert len(finals["3"]) >= 3 and {f["reason"] for f in finals["3"][:-1]} == {"settled"}
    assert [t for f in finals["3"] for t in f["tokens"]] == finals["0"][0]["tokens"]
    assert_user_error(asr_cli("stream", model_dir, long_wav, "--max-segment-length", "-1"), "--max-segment-length -1")


def test_reader_that_leaves_the_pipe(model_dir, wavs, tmp_path):
    """'asr stream ... | head -n 1' (the reader leaves after the first JSON line) ends quietly, with
    SIGPIPE's status 141 or 0 if the lines fitted in the pipe before it left."""
    long_wav = tmp_path / "long.wav"
    speech = np.concatenate([_read(w) for w in wavs])
    sf.write(long_wav, np.tile(speech, -(-int(20 * RATE) // len(speech))), RATE, subtype="PCM_16")
    cmd = f"{sys.executable} -m asr.cli stream {model_dir} {long_wav} --no-endpoint | (read -r line; exit 0)"
    r = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], capture_output=True, text=True, env=_SUBPROCESS_ENV,
                       timeout=120)
    assert r.stderr == "" and r.returncode in (0, 141), r.stderr
