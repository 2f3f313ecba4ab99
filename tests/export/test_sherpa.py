"""sherpa-onnx (PyPI) as the external client of ``asr export``: its tokens must equal our onnxruntime
streaming decoder's (``asr.streaming.onnx.OnnxStream``), greedy and modified beam search.

sherpa-onnx runs in a subprocess: a contract error (missing metadata, wrong inputs) kills the
process instead of raising. The model is the untrained tiny checkpoint with its blank logit pushed
down, so that it emits many tokens that depend on the audio (an all-blank output would make the
comparison vacuous; the test checks that it is not).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import soundfile as sf
import torch

pytest.importorskip("sherpa_onnx")

from asr.streaming.onnx import OnnxStream, OnnxTransducer  # noqa: E402
from export.folder import export_onnx  # noqa: E402
from tests.conftest import tiny_flacs  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(emitting_checkpoint, tiny_fbank, tmp_path_factory):
    out = tmp_path_factory.mktemp("sherpa") / "onnx"
    export_onnx(str(emitting_checkpoint), str(out), chunk_feature_frames=16, int8=("dynamic", "static", "accelerator"),
                calib=str(tiny_fbank / "cuts_test.jsonl.gz"), num_calib=10)  # test: its audio is fixed across corpus versions
    return out


def _sherpa(model_dir, method: str, files, *extra) -> list[list[str]]:
    p = subprocess.run([sys.executable, "-m", "asr.bench.sherpa_client", str(model_dir), method, *extra,
                        *map(str, files)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"sherpa-onnx exited with {p.returncode}: {p.stderr[-2000:]}"
    return json.loads(p.stdout)["tokens"]


# the accelerator flavour has every shape fixed at batch 1: sherpa-onnx runs it with greedy search on
# one stream only (its beam search calls the decoder with one row per hypothesis)
FOLDERS = [("", "greedy_search"), ("", "modified_beam_search"), ("int8-dynamic", "greedy_search"),
           ("int8-dynamic", "modified_beam_search"), ("int8-static", "greedy_search"),
           ("int8-static", "modified_beam_search"), ("int8-accelerator", "greedy_search")]


@pytest.mark.parametrize("folder,method", FOLDERS, ids=[f"{f or 'fp32'}-{m}" for f, m in FOLDERS])
def test_sherpa_tokens_equal_ours(model_dir, tiny_corpus, folder, method):
    files = tiny_flacs(tiny_corpus)[:6]
    theirs = _sherpa(model_dir / folder, method, files)
    model = OnnxTransducer(model_dir / folder)
    ours = []
    for f in files:
        stream = OnnxStream(model, "greedy" if method == "greedy_search" else method, beam=4)
        x, _ = sf.read(f, dtype="float32")
        stream.accept_waveform(x)
        stream.input_finished()
        ours.append([model.symbols[t].replace("\u2581", " ") for t in stream.tokens])  # sherpa shows "▁" as " "
    assert ours == theirs
    emitted = [t for seq in ours for t in seq]
    assert len(emitted) >= 10 * len(files) and len(set(emitted)) >= 5, f"too few tokens to compare: {ours}"
    assert len({tuple(seq) for seq in ours}) > 1, "every file gave the same tokens: the audio did not matter"


def test_batched_streams_in_sherpa_equal_single(model_dir, tiny_corpus):
    """sherpa-onnx's decode_streams stacks several streams on the batch axis: the exported graphs
    must accept any batch and give each stream the tokens it gets alone."""
    files = tiny_flacs(tiny_corpus)[:3]
    assert _sherpa(model_dir, "greedy_search", files, "--batch") == _sherpa(model_dir, "greedy_search", files)


def test_incomplete_model_folder(model_dir, tmp_path):
    from asr.errors import UserError

    (tmp_path / "encoder.onnx").write_bytes((model_dir / "encoder.onnx").read_bytes())
    with pytest.raises(UserError, match="missing decoder.onnx, joiner.onnx, tokens.txt"):
        OnnxTransducer(tmp_path)
    for name in ("decoder.onnx", "joiner.onnx", "tokens.txt"):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    (tmp_path / "joiner.onnx").write_bytes(b"not onnx")
    with pytest.raises(UserError, match="joiner.onnx: onnxruntime cannot load it"):
        OnnxTransducer(tmp_path)
    assert torch.is_tensor(OnnxTransducer(model_dir).predict(torch.tensor([[-1, 0]]))[0])


@pytest.mark.parametrize("name", ["conformer", "convrnnt"])
def test_other_encoders_tokens_equal_sherpa(tiny_checkpoint, tiny_corpus, tmp_path, name):
    """The Conformer and ConvRNN-T with packed states: sherpa-onnx's tokens == ours, greedy and beam."""
    from asr.models.config import encoder_config
    from tests.conftest import make_emitting
    from tests.export.test_onnx import OTHER_ENCODERS, _checkpoint_with

    path = _checkpoint_with(tiny_checkpoint, tmp_path, encoder=encoder_config(name, **OTHER_ENCODERS[name]))
    export_onnx(str(make_emitting(path, tmp_path / "emitting.pt")), str(tmp_path / "onnx"))
    files = tiny_flacs(tiny_corpus)[:4]
    model = OnnxTransducer(tmp_path / "onnx")
    for method in ("greedy_search", "modified_beam_search"):
        theirs = _sherpa(tmp_path / "onnx", method, files)
        ours = []
        for f in files:
            stream = OnnxStream(model, "greedy" if method == "greedy_search" else method, beam=4)
            stream.accept_waveform(sf.read(f, dtype="float32")[0])
            stream.input_finished()
            ours.append([model.symbols[t].replace("\u2581", " ") for t in stream.tokens])
        assert ours == theirs, method
        assert sum(map(len, ours)) >= 5 * len(files), f"too few tokens to compare: {ours}"
