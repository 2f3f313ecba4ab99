"""A dual-attention wake-word model exported: the encoder graph routes frames with a gather / scatter and
outputs the detector's probabilities (``wake_prob``), checked chunk by chunk against PyTorch by the export;
``OnnxStream``'s wake events equal the offline rule over PyTorch's whole-utterance probabilities; ``asr
stream --wake-word`` prints them as JSON lines; a plain folder refuses --wake-word; int8 keeps the output."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from asr.audio import read_audio
from asr.checkpoint import load_model, read_checkpoint, save_checkpoint
from asr.config import TrainConfig, from_dict, to_dict
from asr.decoding.wakeword import WakeConfig, rising_edges, smooth
from asr.features import SherpaFbank
from asr.models.biasing import BiasingConfig
from asr.models.registry import build_model
from asr.models.wakeword import WakeWordConfig
from asr.streaming.onnx import ENCODER_FRAME_S, OnnxRecognizer, OnnxTransducer
from export.folder import export_onnx
from export.onnx import read_metadata
from tests.conftest import assert_user_error, tiny_flacs

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def wake_model(tiny_checkpoint, tmp_path_factory):
    """A tiny wake-word checkpoint whose branches have 'learned' (output projections away from zero) and
    whose detector sits near its threshold (so frames go both ways), exported."""
    root = tmp_path_factory.mktemp("wake")
    ckpt = read_checkpoint(tiny_checkpoint.path)
    cfg = from_dict(TrainConfig, ckpt["config"], "tiny")
    cfg = replace(cfg, model=replace(cfg.model, biasing=BiasingConfig(char_hidden_dim=32, phrase_dim=32, attention_dim=16),
                                     wakeword=WakeWordConfig(detector_dim=16, attention_dim=8)))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for out in (model.biasing.encoder_adapter.out, model.wakeword.wake.out):
            out.weight.copy_(torch.randn(out.weight.shape, generator=g))
        model.wakeword.detector.out.weight.mul_(20)
    path = root / "wake.pt"
    save_checkpoint({**ckpt, "config": to_dict(cfg), "model": model.state_dict()}, path)
    out = root / "onnx"
    export_onnx(str(path), str(out), chunk_feature_frames=16)
    return path, out


def test_graph_outputs_and_metadata(wake_model):
    _, out = wake_model
    enc = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in enc.get_outputs()] == ["encoder_out", "new_state0", "new_state1", "wake_prob"]
    meta = read_metadata(out / "encoder.onnx")
    assert meta["wake_word"] == "ZEPHYRA" and float(meta["wake_threshold"]) == 0.5
    assert OnnxTransducer(out).wake_word == "ZEPHYRA"


def test_stream_wake_events_equal_the_offline_rule(wake_model, tiny_corpus):
    path, out = wake_model
    model = load_model(str(path))[0]
    audio = read_audio(str(tiny_flacs(tiny_corpus)[0]))
    fbank = SherpaFbank()  # the stream's own features: the file, its tail padding, flushed
    feats = torch.cat([fbank.accept_waveform(torch.from_numpy(audio)),
                       fbank.accept_waveform(torch.zeros(int(0.8 * 16000))), fbank.input_finished()])
    with torch.no_grad():
        p = model.wakeword.probabilities(model.encoder(feats[None], torch.tensor([len(feats)]))[0])[0].numpy()
    window, refractory = 3, 4
    threshold = float(np.median(smooth(p, window)))  # events on both sides of it
    rec = OnnxRecognizer(OnnxTransducer(out), wake=WakeConfig(threshold, window, refractory))
    stream = rec.create_stream()
    for i in range(0, len(audio), 1600):
        stream.accept_waveform(audio[i : i + 1600])
        rec.decode([stream])
    stream.input_finished()
    rec.decode([stream])
    q = smooth(p[: stream.encoder_frames], window)
    expected = rising_edges(q, threshold, refractory)
    assert len(expected) >= 2
    assert [e.frame for e in stream.wake_events] == expected
    np.testing.assert_allclose([e.score for e in stream.wake_events], q[expected], atol=1e-4)


def test_cli_stream_wake_word(asr_cli, wake_model, tiny_checkpoint, tiny_corpus, tmp_path):
    _, out = wake_model
    wav = tiny_flacs(tiny_corpus)[0]
    r = asr_cli("stream", out, wav, "--wake-word", "--wake-threshold", "0.05", "--wake-refractory", "2", "--no-partials")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    wakes = [x for x in lines if x["type"] == "wake"]
    assert wakes and all(x["word"] == "ZEPHYRA" and x["time_s"] >= 0 and 0.05 <= x["score"] <= 1 for x in wakes)
    assert all(round(x["time_s"] / ENCODER_FRAME_S, 6).is_integer() for x in wakes)
    assert lines[-1]["type"] == "final"
    plain = tmp_path / "plain"
    export_onnx(str(tiny_checkpoint.path), str(plain), chunk_feature_frames=16)
    assert_user_error(asr_cli("stream", plain, wav, "--wake-word"), "--wake-word needs a folder exported from a wake-word")
    assert_user_error(asr_cli("stream", out, wav, "--wake-word", "--wake-threshold", "2"), "--wake-threshold 2")


def test_int8_keeps_the_wake_output(wake_model, tmp_path):
    path, _ = wake_model
    out = tmp_path / "onnx"
    export_onnx(str(path), str(out), chunk_feature_frames=16, int8=("dynamic",))
    enc = ort.InferenceSession(str(out / "int8-dynamic" / "encoder.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in enc.get_outputs()][-1] == "wake_prob"
