"""Where results go: bad output paths, results files that are not JSON objects, a full disk, a reader
that leaves the pipe, temp files of killed runs, interrupted exports and checkpoints whose weights
are not numbers. Each ends in one ``error:`` line (or quietly, for a closed pipe), never a traceback,
and leaves nothing half-written behind."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.fileio import read_json_object, remove_stale_temps, write_text_atomic
from tests.conftest import _SUBPROCESS_ENV, assert_user_error


def _dead_pid() -> int:
    """The pid of a process that has ended (reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _wav(path, seconds=1.0):
    sf.write(path, 0.1 * np.sin(np.arange(int(16000 * seconds)) / 5.0), 16000, subtype="PCM_16")
    return path


# ---- results files and output paths -------------------------------------------------------------


@pytest.mark.parametrize("content, expected", [
    ("[1, 2, 3]\n", "JSON list"), ("not json\n", "not valid JSON"), ('"text"', "JSON str"),
], ids=["list", "garbage", "string"])
def test_results_json_that_is_not_an_object_is_refused_before_the_decode(asr_cli, tiny_checkpoint, tiny_fbank, tmp_path,
                                                                           content, expected):
    results = tmp_path / "results.json"
    results.write_text(content)
    r = asr_cli("decode", "--checkpoint", tiny_checkpoint.path, "--cuts", tiny_fbank / "cuts_test.jsonl.gz",
                "--out", tmp_path / "decode", "--results-json", results)
    assert_user_error(r, str(results), expected)
    assert not (tmp_path / "decode").exists()  # refused before decoding
    assert results.read_text() == content


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/full"])
def test_results_json_that_is_a_device_is_refused(special):
    """Reading /dev/zero as JSON would never end."""
    with pytest.raises(Exception, match=f"{special}: not a regular file"):
        read_json_object(special)


def test_results_json_that_is_a_folder(asr_cli, tiny_checkpoint, tiny_fbank, tmp_path):
    r = asr_cli("decode", "--checkpoint", tiny_checkpoint.path, "--cuts", tiny_fbank / "cuts_test.jsonl.gz",
                "--out", tmp_path / "decode", "--results-json", tmp_path)
    assert_user_error(r, str(tmp_path), "folder")


@pytest.mark.parametrize("where", ["file", "under-a-file", "dev-null"])
def test_decode_out_that_cannot_be_a_folder(asr_cli, tiny_checkpoint, tiny_fbank, tmp_path, where):
    a_file = tmp_path / "a-file"
    a_file.write_text("mine\n")
    out = {"file": a_file, "under-a-file": a_file / "decode", "dev-null": "/dev/null/decode"}[where]
    r = asr_cli("decode", "--checkpoint", tiny_checkpoint.path, "--cuts", tiny_fbank / "cuts_test.jsonl.gz", "--out", out)
    assert_user_error(r, str(out))
    assert a_file.read_text() == "mine\n"


def test_average_out_on_a_full_disk(asr_cli, tiny_checkpoint, tmp_path, monkeypatch):
    """ENOSPC while the checkpoint is written: one line, and no temp file left."""
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "avg.pt"))

    monkeypatch.setattr(torch, "save", full)
    r = asr_cli("average", "--checkpoints", tiny_checkpoint.path, tiny_checkpoint.path, "--out", tmp_path / "avg.pt")
    assert_user_error(r, str(tmp_path / "avg.pt"), "No space left on device", "free some space")
    assert list(tmp_path.iterdir()) == []


# ---- pipes ----------------------------------------------------------------------------------------


def _shell(command: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], capture_output=True, text=True,
                          env={**_SUBPROCESS_ENV, "ASR": f"{sys.executable} -m asr.cli"}, cwd=tmp_path, timeout=120)


def test_reader_that_leaves_the_pipe_and_a_full_disk(tiny_checkpoint, tmp_path):
    """'asr transcribe ... --streaming | head -n 1' ends quietly (status 141, as SIGPIPE gives other
    tools); writing to /dev/full gives one error line."""
    wav = _wav(tmp_path / "a.wav", seconds=20.0)
    # many partial lines: far more than the pipe holds once head has gone
    cmd = f"$ASR transcribe {wav} --checkpoint {tiny_checkpoint.path} --streaming"
    piped = _shell(f"{cmd} | (read -r line; exit 0)", tmp_path)
    full = _shell(f"{cmd} > /dev/full", tmp_path)
    assert "Traceback" not in piped.stderr and piped.stderr == "", piped.stderr
    assert piped.returncode in (0, 141)
    assert_user_error(full, "No space left on device")


# ---- leftovers ------------------------------------------------------------------------------------


def test_stale_temp_files_are_removed_by_the_next_write(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    stale = tmp_path / f".results.json.tmp-{dead}.json"
    stale.write_text("half")
    running = tmp_path / f".results.json.tmp-{alive}.json"  # another live process is writing it now
    running.write_text("half")
    other = tmp_path / f".other.json.tmp-{dead}.json"  # another file's: left for its own writer
    other.write_text("half")
    write_text_atomic(tmp_path / "results.json", "{}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["results.json", running.name, other.name])


def test_stale_temp_folders_are_removed(tmp_path):
    dead = _dead_pid()
    (tmp_path / f".export.tmp-{dead}" / "int8-dynamic").mkdir(parents=True)
    (tmp_path / f".export.tmp-{dead}" / "encoder.onnx").write_bytes(b"half")
    remove_stale_temps(tmp_path, ".export.tmp-")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_export_into_a_new_folder_leaves_no_folder(asr_cli, tiny_checkpoint, tmp_path, monkeypatch):
    import export.folder

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export.folder, "write_graphs", interrupted)
    out = tmp_path / "onnx"
    r = asr_cli("export", "--checkpoint", tiny_checkpoint.path, "--out", out)
    assert r.returncode == 130
    assert not out.exists()


def test_export_after_a_killed_export_removes_its_leftovers(asr_cli, tiny_checkpoint, tmp_path):
    out = tmp_path / "onnx"
    stale = out / f".export.tmp-{_dead_pid()}"
    stale.mkdir(parents=True)
    (stale / "encoder.onnx").write_bytes(b"half")
    r = asr_cli("export", "--checkpoint", tiny_checkpoint.path, "--out", out)
    assert r.returncode == 0, r.stderr
    assert not stale.exists() and (out / "encoder.onnx").is_file()


# ---- weights that are not numbers -----------------------------------------------------------------


@pytest.mark.parametrize("verb, value, module", [("export", "nan", "joiner"), ("transcribe", "nan", "joiner"),
                                                 ("export", "-inf", "encoder")])
def test_checkpoint_with_nan_weights(asr_cli, tiny_checkpoint, tmp_path, verb, value, module):
    ckpt = torch.load(tiny_checkpoint.path, weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point() and k.startswith(module))
    ckpt["model"][name] = ckpt["model"][name].clone()
    ckpt["model"][name].view(-1)[3] = float(value)
    bad = tmp_path / "nan.pt"
    torch.save(ckpt, bad)
    args = {"export": ["--out", tmp_path / "onnx"], "transcribe": [_wav(tmp_path / "a.wav")]}[verb]
    r = asr_cli(verb, *([args[0]] if verb == "transcribe" else []), "--checkpoint", bad, *(args if verb == "export" else []))
    assert_user_error(r, str(bad), name, "NaN")
    assert not (tmp_path / "onnx").exists()
