"""A biasing model exported: the phrase encoder as its own graph, the encoder and decoder taking the
list's keys and values, onnxruntime == PyTorch with a list (chunk by chunk against the whole-utterance
``BiasedModel``), ``asr stream --bias-list``, and what an unbiased export keeps or refuses."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from asr.checkpoint import load_model, read_checkpoint, save_checkpoint
from asr.config import TrainConfig, from_dict, to_dict
from asr.models.biasing import BiasingConfig
from asr.models.registry import build_model
from asr.models.transducer import BiasedModel
from asr.streaming.onnx import OnnxStream, OnnxTransducer
from export.folder import export_onnx
from export.onnx import BIAS_GRAPH, read_metadata
from tests.conftest import assert_user_error, tiny_flacs

ort = pytest.importorskip("onnxruntime")
ATOL = 1e-4
PHRASES = ["ANNA SMITH", "BOB", "XAVIER QUINTANILLA", "MOM"]


@pytest.fixture(scope="module")
def biased(tiny_checkpoint, tmp_path_factory):
    """A tiny biasing checkpoint whose adapters have 'learned' (output projections away from zero, so the
    list changes the outputs) and whose joiner emits (see conftest.make_emitting), exported."""
    root = tmp_path_factory.mktemp("biased")
    ckpt = read_checkpoint(tiny_checkpoint.path)
    cfg = from_dict(TrainConfig, ckpt["config"], "tiny")
    cfg = replace(cfg, model=replace(cfg.model, biasing=BiasingConfig(char_hidden_dim=32, phrase_dim=32, attention_dim=16)))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for adapter in (model.biasing.encoder_adapter, model.biasing.predictor_adapter):
            adapter.out.weight.copy_(torch.randn(adapter.out.weight.shape, generator=g))
        model.joiner.output.bias[0] -= 3.0
        model.joiner.output.weight.mul_(8)
    path = root / "biased.pt"
    save_checkpoint({**ckpt, "config": to_dict(cfg), "model": model.state_dict()}, path)
    out = root / "onnx"
    export_onnx(str(path), str(out), chunk_feature_frames=16)
    return path, out


def test_files_inputs_and_metadata(biased):
    _, out = biased
    assert (out / BIAS_GRAPH).is_file()
    enc = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in enc.get_inputs()] == ["x", "state0", "state1", "bias_keys", "bias_values"]
    assert [i.name for i in dec.get_inputs()] == ["y", "bias_keys", "bias_values"]
    meta = read_metadata(out / "encoder.onnx")
    assert meta["biasing"] == "acoustic" and meta["bias_attention_dim"] == "16"
    assert read_metadata(out / BIAS_GRAPH)["export_id"] == meta["export_id"]


@pytest.mark.parametrize("phrases", [PHRASES, []], ids=["list", "empty"])
def test_onnx_with_a_list_equals_the_pytorch_biased_model(biased, phrases):
    """Encoder chunk by chunk (state carried) against BiasedModel's whole-utterance encode, and the
    decoder, with the phrases encoded by bias_encoder.onnx; an empty list is the no-bias entry alone."""
    path, out = biased
    model = load_model(path)[0].eval()
    reference = BiasedModel(model, phrases)
    onnx_model = OnnxTransducer(out)
    onnx_model.set_bias_list(phrases)
    chunk, T, chunks = 16, 21, 5
    x = torch.randn(2, chunk * chunks + 5, 80, generator=torch.Generator().manual_seed(0)) * 3 - 8
    with torch.no_grad():
        full = reference.encode(x, torch.full((2,), x.size(1)))[0].numpy()
        unbiased = model.encode(x, torch.full((2,), x.size(1)))[0].numpy()
    state = tuple(s.numpy() for s in model.encoder.init_state(2))
    outs = []
    for i in range(chunks):
        y, state = onnx_model.encode_chunk(x[:, i * chunk : i * chunk + T].numpy(), state)
        outs.append(y.numpy())
    got = np.concatenate(outs, axis=1)
    err = float(np.abs(got - full).max())
    assert err < ATOL, f"max |onnxruntime - PyTorch| = {err}"
    assert np.abs(full - unbiased).max() > 1e-2, "the adapter should change the encoder output"
    y = torch.tensor([[-1, 0], [3, 4], [5, 5]])[:, -model.context_size:]
    with torch.no_grad():
        want = reference.predict(y)[0].numpy()
    err = float(np.abs(onnx_model.predict(y)[0].numpy() - want).max())
    assert err < ATOL, f"decoder: max |onnxruntime - PyTorch| = {err}"


def _stream_tokens(model, audio, method="modified_beam_search"):
    s = OnnxStream(model, method, 4)
    s.accept_waveform(audio)
    s.input_finished()
    return s.tokens


def test_cli_stream_with_a_bias_list(asr_cli, biased, tiny_corpus, tmp_path):
    """'asr stream --bias-list' gives the tokens of an OnnxStream whose model has the list, and the list
    changes them; the list reaches greedy search too."""
    import soundfile as sf

    _, out = biased
    flac = tiny_flacs(tiny_corpus)[0]
    audio = sf.read(flac, dtype="float32")[0]
    (tmp_path / "list.txt").write_text("\n".join(PHRASES) + "\n")
    model = OnnxTransducer(out)
    plain = _stream_tokens(model, audio)
    model.set_bias_list(PHRASES)
    with_list = _stream_tokens(model, audio)
    assert with_list != plain
    for method in ("modified_beam_search", "greedy"):
        r = asr_cli("stream", out, flac, "--decoding-method", method, "--no-endpoint", "--bias-list", tmp_path / "list.txt")
        assert r.returncode == 0, r.stderr
        final = [json.loads(line) for line in r.stdout.splitlines() if '"final"' in line][-1]
        assert final["tokens"] == [model.symbols[t] for t in _stream_tokens(model, audio, method)]


def test_bias_list_errors(asr_cli, biased, tiny_checkpoint, tiny_corpus, tmp_path):
    _, out = biased
    flac = tiny_flacs(tiny_corpus)[0]
    (tmp_path / "bad.txt").write_text("ANNA\nJOS\u00c9 \u2603\n")
    assert_user_error(asr_cli("stream", out, flac, "--bias-list", tmp_path / "bad.txt"), "bad.txt")
    assert_user_error(asr_cli("stream", out, flac, "--bias-list", tmp_path / "missing.txt"), "missing.txt")
    plain = tmp_path / "plain"
    export_onnx(str(tiny_checkpoint.path), str(plain), chunk_feature_frames=16)
    (tmp_path / "list.txt").write_text("ANNA\n")
    assert_user_error(asr_cli("stream", plain, flac, "--bias-list", tmp_path / "list.txt"), "not exported from a biasing")
    assert not (plain / BIAS_GRAPH).exists()
    assert_user_error(asr_cli("export", "--checkpoint", biased[0], "--out", tmp_path / "i8", "--int8", "accelerator"),
                      "--int8 accelerator", "any length")


@pytest.mark.parametrize("flavour", ["dynamic", "static"])
def test_int8_flavours_of_a_biasing_model(biased, tiny_fbank, tmp_path, flavour):
    """Each int8 folder carries the float phrase encoder and graphs that take the list; with the list,
    its encoder output stays close to the float folder's (SNR measured by the export on a short list)."""
    path, _ = biased
    out = tmp_path / "onnx"
    result = export_onnx(str(path), str(out), chunk_feature_frames=16, int8=(flavour,),
                         calib=str(tiny_fbank / "cuts_train.jsonl.gz"), num_calib=6)
    folder = out / f"int8-{flavour}"
    assert (folder / BIAS_GRAPH).read_bytes() == (out / BIAS_GRAPH).read_bytes()
    snr = result["int8"][flavour]["encoder_snr_db"]
    assert snr is not None and snr > 15, snr
    model = OnnxTransducer(folder)
    model.set_bias_list(PHRASES)
    state = model.init_state(1)
    x = np.zeros((1, model.chunking.window_feature_frames, 80), np.float32) - 8
    y, _ = model.encode_chunk(x, state)
    assert y.shape[1] == 4


def test_semantic_phrase_encoder_exports(tiny_checkpoint, tmp_path):
    """The semantic encoder (the character language model and its projection) is inside bias_encoder.onnx:
    the export's parity check covers it, and asr stream runs the folder with a list."""
    ckpt = read_checkpoint(tiny_checkpoint.path)
    cfg = from_dict(TrainConfig, ckpt["config"], "tiny")
    cfg = replace(cfg, model=replace(cfg.model, biasing=BiasingConfig(
        type="acoustic+semantic", char_hidden_dim=32, phrase_dim=32, attention_dim=16, semantic_embed_dim=16,
        semantic_hidden_dim=24)))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    with torch.no_grad():
        model.biasing.semantic.proj.weight.normal_()
        model.biasing.encoder_adapter.out.weight.normal_()
    path = tmp_path / "semantic.pt"
    save_checkpoint({**ckpt, "config": to_dict(cfg), "model": model.state_dict()}, path)
    errs = export_onnx(str(path), str(tmp_path / "onnx"), chunk_feature_frames=16)
    assert read_metadata(tmp_path / "onnx" / "encoder.onnx")["biasing"] == "acoustic+semantic"
    assert json.dumps(errs)  # the parity errors, bias_encoder included, were checked by the export
    loaded = load_model(str(path))[0]
    onnx_model = OnnxTransducer(tmp_path / "onnx")
    onnx_model.set_bias_list(PHRASES)
    reference = BiasedModel(loaded, PHRASES)
    keys = onnx_model._bias["encoder"]["bias_keys"]
    np.testing.assert_allclose(keys, reference._encoder_kv[0][1:].numpy(), atol=ATOL)
