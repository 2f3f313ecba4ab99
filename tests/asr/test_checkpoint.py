"""Checkpoints that keep loading: a checkpoint written before ``config_version`` existed (the fixtures
of tests/fixtures/checkpoint_v1, written by commit 7d2f6e1) loads, decodes the tokens that commit
decoded, and exports; and a checkpoint carries its tokenizer, so it decodes wherever it is copied."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from asr.checkpoint import checkpoint_tokenizer, load_model, read_checkpoint, save_checkpoint, tokenizer_tensor
from asr.config import CONFIG_VERSION, load_config, migrate_config
from asr.decoding.search import search
from asr.errors import UserError
from asr.tokenizer import Tokenizer
from export.folder import export_onnx
from tests.conftest import assert_user_error

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint_v1"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


@pytest.mark.parametrize("name", ["lstm", "conformer"])
def test_old_checkpoint_loads_and_decodes_the_same_tokens(name):
    raw = torch.load(FIXTURES / f"{name}.pt", weights_only=True)
    assert "config_version" not in raw and "tokenizer" not in raw  # really the old format
    model, cfg, ckpt = load_model(FIXTURES / f"{name}.pt")
    assert ckpt["config_version"] == CONFIG_VERSION
    if name == "conformer":  # version 2 renamed the Conformer's chunk keys
        assert "chunk_size" in raw["config"]["model"]["encoder"]
        assert (cfg.model.encoder.chunk_encoder_frames, cfg.model.encoder.left_context_encoder_frames) == (4, 8)
        assert cfg.model.encoder.train_chunk_encoder_frames == (4, 0)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((2, 150, 80)).astype(np.float32) * 2.0)
    x_lens = torch.tensor(EXPECTED["x_lens"])
    with torch.no_grad():
        enc, enc_lens = model.encode(x, x_lens)
        greedy = search(model, enc, enc_lens, "greedy").hyps
        beam = search(model, enc, enc_lens, "modified_beam_search", 4).hyps
    assert greedy == EXPECTED[name]["greedy"] and beam == EXPECTED[name]["modified_beam_search_4"]
    assert sum(map(len, greedy)) > 20  # the fixture emits: the comparison is not vacuous


@pytest.mark.parametrize("name", ["lstm", "conformer"])
def test_old_checkpoint_exports(name, tmp_path):
    """Exported with the tokenizer it was trained with (it carries none); onnxruntime equals PyTorch
    (the export's own checks) and the folder holds that tokenizer."""
    r = export_onnx(str(FIXTURES / f"{name}.pt"), str(tmp_path / "onnx"), bpe_model=str(FIXTURES / "bpe.model"))
    assert max(r["max_abs_diff"].values()) <= 1e-4
    assert r["decode_chunk_len"] == (16 if name == "conformer" else 32)
    assert (tmp_path / "onnx" / "bpe.model").read_bytes() == (FIXTURES / "bpe.model").read_bytes()


def test_old_checkpoint_decodes_through_the_cli(asr_cli, tiny_fbank, tmp_path):
    """... on the threads asked for (a busy 2-core machine decodes 4x faster on one than at torch's default)."""
    cuts = tiny_fbank / "cuts_test.jsonl.gz"
    before = torch.get_num_threads()
    try:
        r = asr_cli("decode", "--checkpoint", FIXTURES / "lstm.pt", "--cuts", cuts, "--out", tmp_path / "dec",
                    "--bpe-model", FIXTURES / "bpe.model", "--threads", "1")
        assert r.returncode == 0, r.stderr
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert (tmp_path / "dec" / "wer-test-greedy.txt").is_file()
    assert_user_error(asr_cli("decode", "--checkpoint", FIXTURES / "lstm.pt", "--cuts", cuts, "--out", tmp_path / "d2",
                              "--threads", "0"), "--threads 0", "must be in [1, 1024]")


def test_old_checkpoint_finds_its_tokenizer_beside_it(asr_cli, tiny_fbank, tmp_path, monkeypatch):
    """Its config names data/lang_bpe_32/bpe.model, relative to where it was trained; from another folder
    the bpe.model beside the checkpoint is found by name, and decodes as the one passed explicitly."""
    cuts = tiny_fbank / "cuts_test.jsonl.gz"
    monkeypatch.chdir(tmp_path)
    found = asr_cli("decode", "--checkpoint", FIXTURES / "lstm.pt", "--cuts", cuts, "--out", "found")
    passed = asr_cli("decode", "--checkpoint", FIXTURES / "lstm.pt", "--cuts", cuts, "--out", "passed",
                     "--bpe-model", FIXTURES / "bpe.model")
    assert found.returncode == 0 and passed.returncode == 0, (found.stderr, passed.stderr)
    assert (tmp_path / "found" / "recogs-test-greedy.txt").read_text() == (tmp_path / "passed" / "recogs-test-greedy.txt").read_text()


def test_old_checkpoint_without_its_tokenizer_says_what_to_pass(asr_cli, tiny_fbank, tmp_path, monkeypatch):
    alone = tmp_path / "alone" / "lstm.pt"  # no bpe.model beside it, none from the current folder
    alone.parent.mkdir()
    alone.write_bytes((FIXTURES / "lstm.pt").read_bytes())
    monkeypatch.chdir(tmp_path)
    r = asr_cli("decode", "--checkpoint", alone, "--cuts", tiny_fbank / "cuts_test.jsonl.gz", "--out", "d")
    assert_user_error(r, "lstm.pt", "carries no tokenizer", "data/lang_bpe_32/bpe.model", "--bpe-model")


@pytest.mark.parametrize("carried", [b"", b"not a sentencepiece model"])
def test_a_checkpoint_whose_tokenizer_is_broken_says_what_to_pass(carried, asr_cli, tiny_fbank, tmp_path):
    ckpt = read_checkpoint(FIXTURES / "lstm.pt")
    broken = tmp_path / "broken.pt"
    save_checkpoint({**ckpt, "tokenizer": torch.tensor(list(carried), dtype=torch.uint8)}, broken)
    r = asr_cli("decode", "--checkpoint", broken, "--cuts", tiny_fbank / "cuts_test.jsonl.gz", "--out", tmp_path / "d")
    assert_user_error(r, "broken.pt (its tokenizer)", "not a sentencepiece model", "--bpe-model")

def test_migration_renames_and_refuses_the_future():
    v1 = {"model": {"encoder": {"type": "conformer", "chunk_size": 8, "left_context": 32, "train_chunk_sizes": [4, 8]}},
          "compression": {"method": "aat", "chunk_frames": 16}}
    v2 = migrate_config(v1, 1, "x.pt")
    assert v2["model"]["encoder"] == {"type": "conformer", "chunk_encoder_frames": 8, "left_context_encoder_frames": 32,
                                      "train_chunk_encoder_frames": [4, 8]}
    assert v2["compression"] == {"method": "aat", "chunk_feature_frames": 16}
    assert v1["model"]["encoder"]["chunk_size"] == 8, "the input is left as it was"
    assert migrate_config(v2, CONFIG_VERSION, "x.pt") == v2
    with pytest.raises(UserError, match=f"x.pt: written with config_version {CONFIG_VERSION + 1} by a newer"):
        migrate_config(v2, CONFIG_VERSION + 1, "x.pt")


def test_a_yaml_file_with_an_old_key_names_the_new_one(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"model": {"encoder": {"type": "conformer", "chunk_size": 8}}}))
    with pytest.raises(UserError, match="'model.encoder.chunk_size' was renamed to 'model.encoder.chunk_encoder_frames'"):
        load_config(str(path))


def test_a_checkpoint_carries_its_tokenizer(tiny_checkpoint, tiny_corpus, asr_cli, tmp_path, monkeypatch):
    """A checkpoint copied elsewhere, with the BPE model its config names gone, still decodes: with the
    tokenizer it carries (what ``asr train`` writes), from another folder."""
    ckpt = read_checkpoint(tiny_checkpoint.path)
    assert "tokenizer" not in ckpt
    tokenizer = Tokenizer(tiny_checkpoint.bpe_model)
    moved = tmp_path / "elsewhere" / "final.pt"
    save_checkpoint({**ckpt, "tokenizer": tokenizer_tensor(tokenizer)}, moved)
    cfg_path = read_checkpoint(moved)["config"]["data"]["bpe_model"]
    shutil.copytree(Path(cfg_path).parent, tmp_path / "lang_backup")
    shutil.rmtree(Path(cfg_path).parent)
    try:
        model, cfg, carried = load_model(moved)
        got = checkpoint_tokenizer(carried, cfg, str(moved))
        assert got.to_bytes() == tokenizer.to_bytes() and got.encode("CALL MOM") == tokenizer.encode("CALL MOM")
        monkeypatch.chdir(tmp_path)
        audio = sorted(tiny_corpus.glob("test/*/*/*.flac"))[0]
        r = asr_cli("transcribe", audio, "--checkpoint", moved)
        assert r.returncode == 0, r.stderr
    finally:
        shutil.copytree(tmp_path / "lang_backup", Path(cfg_path).parent)
