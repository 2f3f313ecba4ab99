"""Bad input: a one-line ``error:`` naming the file and the fix, exit code 2, no traceback, nothing
half-written. Other sample rates and stereo audio are accepted with a one-line warning.

Most cases run ``asr.cli.main`` in-process (``asr_cli``, cheap); ``test_fresh_interpreter`` re-runs a
sample of them as real ``python -m asr.cli`` processes, so import-time warnings would show up too.
"""

from __future__ import annotations

import gzip
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import load_audio
from asr.errors import UserError
from asr.frontend import SAMPLE_RATE_HZ
from tests.conftest import assert_user_error, finish_asr_subprocess, start_asr_subprocess, tiny_flacs

# ---- helpers -----------------------------------------------------------------------------------


def _flacs(root, part):
    return sorted((root / part).glob("*/*/*.flac"))


def _corrupt(path):
    """Overwrite a stretch in the middle of the file with random bytes (header and end intact)."""
    data = bytearray(path.read_bytes())
    a = len(data) // 3
    data[a : a + 400] = np.random.default_rng(0).integers(0, 256, 400, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _leftovers(folder):
    """Hidden or temporary files a crashed/failed writer could leave behind."""
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") or ".tmp" in p.name)


def _write_wav(path, samples, rate):
    sf.write(path, samples, rate, subtype="PCM_16")
    return path


# ---- asr prepare librispeech -------------------------------------------------------------------


def test_prepare_empty_dir(asr_cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "manifests"
    line = assert_user_error(asr_cli("prepare", "librispeech", "--root", empty, "--out", out), str(empty))
    assert "--root" in line
    assert not out.exists()


def test_prepare_missing_root(asr_cli, tmp_path):
    assert_user_error(asr_cli("prepare", "librispeech", "--root", tmp_path / "nope", "--out", tmp_path / "m"),
                      str(tmp_path / "nope"), "--root")


def test_prepare_dir_without_audio(asr_cli, tmp_path):
    chapter = tmp_path / "root" / "train" / "19" / "198"
    chapter.mkdir(parents=True)
    (chapter / "19-198.trans.txt").write_text("19-198-0000 HELLO WORLD\n")
    out = tmp_path / "manifests"
    assert_user_error(asr_cli("prepare", "librispeech", "--root", tmp_path / "root", "--out", out),
                      str(tmp_path / "root" / "train"), ".flac")
    assert not out.exists()


def test_prepare_root_is_one_part(asr_cli, tiny_corpus, tmp_path):
    """Passing a part folder as --root says which --root and --parts to use instead."""
    line = assert_user_error(asr_cli("prepare", "librispeech", "--root", tiny_corpus / "dev", "--out", tmp_path / "m"),
                             str(tiny_corpus / "dev"))
    assert f"--root {tiny_corpus.resolve()}" in line and "--parts dev" in line


@pytest.mark.parametrize("damage", [_corrupt, _truncate], ids=["corrupt", "truncated"])
def test_prepare_bad_flac_names_file(asr_cli, copy_corpus, tmp_path, damage):
    root = copy_corpus()
    bad = _flacs(root, "train")[1]
    damage(bad)
    out = tmp_path / "manifests"
    line = assert_user_error(asr_cli("prepare", "librispeech", "--root", root, "--out", out, "--parts", "train"), str(bad))
    assert "re-download" in line
    assert not out.exists()  # nothing was written: the only part failed


def test_prepare_empty_flac(asr_cli, copy_corpus, tmp_path):
    root = copy_corpus()
    bad = _flacs(root, "dev")[0]
    sf.write(bad, np.zeros(0), 16000, format="FLAC")  # libsndfile cannot even reopen this one
    assert_user_error(asr_cli("prepare", "librispeech", "--root", root, "--out", tmp_path / "m", "--parts", "dev"),
                      str(bad))


def test_prepare_transcript_line_without_id(asr_cli, copy_corpus, tmp_path):
    root = copy_corpus()
    trans = sorted((root / "dev").glob("*/*/*.trans.txt"))[0]
    lines = trans.read_text().splitlines()
    trans.write_text("\n".join(lines + ["TURN OFF THE RADIO"]) + "\n")
    line = assert_user_error(asr_cli("prepare", "librispeech", "--root", root, "--out", tmp_path / "m"),
                             f"{trans}:{len(lines) + 1}", "TURN OFF THE RADIO")
    assert "<speaker>-<chapter>-<utt> TEXT" in line


def test_prepare_transcript_not_utf8(asr_cli, copy_corpus, tmp_path):
    root = copy_corpus()
    trans = sorted((root / "dev").glob("*/*/*.trans.txt"))[0]
    trans.write_bytes(trans.read_bytes() + b"1-2-0003 CAF\xc9\n")  # latin-1
    assert_user_error(asr_cli("prepare", "librispeech", "--root", root, "--out", tmp_path / "m"), str(trans), "UTF-8")


def test_prepare_duplicate_utterance_id(asr_cli, copy_corpus, tmp_path):
    root = copy_corpus()
    trans = sorted((root / "dev").glob("*/*/*.trans.txt"))[0]
    first = trans.read_text().splitlines()[0]
    trans.write_text(trans.read_text() + first.split()[0] + " SOMETHING ELSE\n")
    assert_user_error(asr_cli("prepare", "librispeech", "--root", root, "--out", tmp_path / "m"),
                      str(trans), first.split()[0], "already listed")


def test_prepare_failure_leaves_nothing_half_written(asr_cli, copy_corpus, tmp_path):
    """A corrupt flac in the second part (sorted: dev, test, train): dev is complete, test and
    train have no manifests, and no temporary file is left."""
    root = copy_corpus()
    bad = _flacs(root, "test")[-1]
    _corrupt(bad)
    out = tmp_path / "manifests"
    assert_user_error(asr_cli("prepare", "librispeech", "--root", root, "--out", out), str(bad))
    assert sorted(p.name for p in out.glob("cuts_*")) == ["cuts_dev.jsonl.gz"]
    assert not list(out.glob("*_test.*")) and not list(out.glob("*_train.*"))
    assert _leftovers(out) == []


def test_prepare_crash_while_writing_leaves_no_temp_file(monkeypatch, tiny_corpus, tmp_path):
    """Regression: a writer that dies half-way (disk full, ...) used to leave its temp file behind."""
    from lhotse import CutSet

    from asr.data.librispeech import prepare_librispeech

    def failing_to_file(self, path):
        with gzip.open(path, "wt") as f:
            f.write('{"id": "half')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(CutSet, "to_file", failing_to_file)
    out = tmp_path / "manifests"
    with pytest.raises(OSError):
        prepare_librispeech(str(tiny_corpus), str(out), ["dev"])
    assert not list(out.glob("cuts_*"))
    assert _leftovers(out) == []


# ---- asr features ------------------------------------------------------------------------------


def test_features_failure_leaves_nothing_half_written(asr_cli, copy_corpus, tmp_path):
    """A flac damaged after 'asr prepare': dev (first) completes, train fails naming the file,
    and neither train output nor any temporary file remains."""
    from asr.data.librispeech import prepare_librispeech

    root = copy_corpus()
    manifests = tmp_path / "manifests"
    prepare_librispeech(str(root), str(manifests), ["dev", "train"])
    bad = _flacs(root, "train")[2]
    _truncate(bad)
    out = tmp_path / "fbank"
    line = assert_user_error(asr_cli("features", "--manifests", manifests, "--out", out, "--parts", "dev", "train"),
                             str(bad), "truncated", progress_bars=True)
    assert "re-download" in line
    assert sorted(p.name for p in out.iterdir()) == ["cuts_dev.jsonl.gz", "feats_dev.lca"]
    assert _leftovers(out) == []


def test_features_bad_flac_in_a_worker(copy_corpus, tmp_path, monkeypatch):
    """The same one-line error when the damaged file is decoded in a worker process."""
    import asr.data.fbank as fbank_module
    from asr.data.librispeech import prepare_librispeech

    monkeypatch.setattr(fbank_module, "BATCH_CUTS", 2)
    root = copy_corpus()
    manifests = tmp_path / "manifests"
    prepare_librispeech(str(root), str(manifests), ["train"])
    bad = _flacs(root, "train")[5]
    _truncate(bad)
    out = tmp_path / "fbank"
    with pytest.raises(UserError) as err:
        fbank_module.compute_fbank(str(manifests), str(out), ["train"], progress=False, num_workers=2)
    message = str(err.value)
    assert str(bad) in message and "truncated" in message and "\n" not in message
    assert sorted(p.name for p in out.iterdir()) == []


def test_features_missing_manifest(asr_cli, tmp_path):
    assert_user_error(asr_cli("features", "--manifests", tmp_path, "--out", tmp_path / "f", "--parts", "train"),
                      str(tmp_path / "cuts_train.jsonl.gz"), "asr prepare")


# ---- asr train: strict config ------------------------------------------------------------------


def test_train_unknown_config_key(asr_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  encoder: {type: lstm, bogus: 1}\n")
    line = assert_user_error(asr_cli("train", "--config", bad), str(bad), "model.encoder.bogus")
    assert "valid keys" in line and "hidden_dim" in line


def test_train_unknown_set_key(asr_cli, tmp_path):
    ok = tmp_path / "ok.yaml"
    ok.write_text("model: {encoder: {type: lstm}}\n")
    line = assert_user_error(asr_cli("train", "--config", ok, "--set", "optim.nonsense=1"), str(ok), "optim.nonsense")
    assert "--set" in line and "valid keys" in line and "lr" in line
    assert not (tmp_path / "exp").exists()


def test_train_missing_config(asr_cli, tmp_path):
    assert_user_error(asr_cli("train", "--config", tmp_path / "nope.yaml"), str(tmp_path / "nope.yaml"))


# ---- asr decode / asr transcribe: missing and foreign checkpoints ------------------------------


def _foreign_checkpoints(folder):
    """Files that are not ondevice-asr checkpoints, each made the way a user would end up with one."""
    torch.save({"state_dict": {"w": torch.zeros(3)}, "epoch": 3}, folder / "plain_dict.pt")
    torch.save(torch.nn.Linear(2, 2), folder / "pickled_module.pt")
    (folder / "text.pt").write_text("this is not a checkpoint\nreally\n")
    (folder / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (folder / "empty.pt").write_bytes(b"")
    (folder / "pickle.pt").write_bytes(pickle.dumps({"format": "ondevice-asr-checkpoint-v1"}))
    return ["plain_dict.pt", "pickled_module.pt", "text.pt", "random.pt", "empty.pt", "pickle.pt"]


def test_decode_missing_checkpoint(asr_cli, tiny_fbank, tmp_path):
    missing = tmp_path / "exp" / "final.pt"
    assert_user_error(asr_cli("decode", "--checkpoint", missing, "--cuts", tiny_fbank / "cuts_test.jsonl.gz",
                              "--out", tmp_path / "decode"), str(missing), "asr train")
    assert not (tmp_path / "decode").exists()


def test_decode_foreign_checkpoints(asr_cli, tiny_fbank, tmp_path):
    for name in _foreign_checkpoints(tmp_path):
        assert_user_error(asr_cli("decode", "--checkpoint", tmp_path / name, "--cuts", tiny_fbank / "cuts_test.jsonl.gz",
                                  "--out", tmp_path / "decode"), str(tmp_path / name), "asr train")
    assert not (tmp_path / "decode").exists()


def test_transcribe_missing_and_foreign_checkpoints(asr_cli, tmp_path):
    wav = _write_wav(tmp_path / "a.wav", np.zeros(8000), SAMPLE_RATE_HZ)
    checkpoints = [tmp_path / "missing.pt", tmp_path] + [tmp_path / n for n in _foreign_checkpoints(tmp_path)]
    for ckpt in checkpoints:  # the folder itself is a common slip (exp/demo instead of exp/demo/final.pt)
        assert_user_error(asr_cli("transcribe", wav, "--checkpoint", ckpt), str(ckpt), "asr train")


def test_checkpoint_with_wrong_weights(asr_cli, tiny_checkpoint, tmp_path):
    from asr.checkpoint import read_checkpoint, save_checkpoint

    ckpt = read_checkpoint(tiny_checkpoint.path)
    ckpt["model"] = {k: v for i, (k, v) in enumerate(ckpt["model"].items()) if i > 0}
    broken = tmp_path / "broken.pt"
    save_checkpoint(ckpt, broken)
    wav = _write_wav(tmp_path / "a.wav", np.zeros(8000), SAMPLE_RATE_HZ)
    assert_user_error(asr_cli("transcribe", wav, "--checkpoint", broken), str(broken))


def test_average_foreign_and_mismatched_checkpoints(asr_cli, tiny_checkpoint, tmp_path):
    from asr.checkpoint import read_checkpoint, save_checkpoint

    out = tmp_path / "avg.pt"
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint\n")
    assert_user_error(asr_cli("average", "--checkpoints", tiny_checkpoint.path, text, "--out", out), str(text))
    other = read_checkpoint(tiny_checkpoint.path)
    other["model"] = {k: v[..., :1] if v.dim() else v for k, v in other["model"].items()}
    save_checkpoint(other, tmp_path / "other.pt")
    assert_user_error(asr_cli("average", "--checkpoints", tmp_path / "other.pt", tiny_checkpoint.path, "--out", out),
                      str(tmp_path / "other.pt"), "one training run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.pt", "text.pt"]  # no avg.pt, no temp file


# ---- asr transcribe: audio ---------------------------------------------------------------------


def test_transcribe_empty_wav(asr_cli, tiny_checkpoint, tmp_path):
    wav = _write_wav(tmp_path / "empty.wav", np.zeros(0), SAMPLE_RATE_HZ)
    assert_user_error(asr_cli("transcribe", wav, "--checkpoint", tiny_checkpoint.path), str(wav), "no samples")


def test_transcribe_very_short_wav(asr_cli, tiny_checkpoint, tmp_path):
    """30 ms of audio: either an empty transcript or a one-line error, never a traceback."""
    wav = _write_wav(tmp_path / "short.wav", np.full(480, 0.1), SAMPLE_RATE_HZ)
    result = asr_cli("transcribe", wav, "--checkpoint", tiny_checkpoint.path)
    if result.returncode != 0:
        assert_user_error(result, str(wav))


def test_transcribe_missing_and_unreadable_audio(asr_cli, tiny_checkpoint, tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("not audio\n")
    for path in [tmp_path / "missing.wav", text]:
        assert_user_error(asr_cli("transcribe", path, "--checkpoint", tiny_checkpoint.path), str(path))


def _tone(num_samples, rate, freq_hz=440.0):
    return 0.5 * np.sin(2 * np.pi * freq_hz * np.arange(num_samples) / rate)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 44101, 96000])
def test_load_audio_resamples_with_one_warning(tmp_path, rate, capsys):
    wav = _write_wav(tmp_path / "a.wav", _tone(rate, rate), rate)  # 1 s of 440 Hz
    samples = load_audio(str(wav))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: ") and str(wav) in err and f"{rate} Hz" in err
    assert samples.dtype == torch.float32
    assert samples.numel() == SAMPLE_RATE_HZ  # round(S * 16000 / rate) = 16000 for 1 s
    # Band-limited resampling of a 440 Hz tone is the same tone at 16 kHz, up to the resampler's
    # ripple and 16-bit quantisation; the first and last 10 ms see the zero padding.
    expected = torch.from_numpy(_tone(SAMPLE_RATE_HZ, SAMPLE_RATE_HZ)).float()
    diff = (samples - expected)[160:-160].abs().max().item()
    tol = 1e-3
    assert diff <= tol, f"resampled tone vs exact tone: max |diff| {diff:.2e} > {tol}"


def test_load_audio_downmixes_stereo_with_one_warning(tmp_path):
    rng = np.random.default_rng(0)
    ints = rng.integers(-20000, 20000, size=(4000, 2), dtype=np.int16)
    wav = tmp_path / "stereo.wav"
    sf.write(wav, ints, SAMPLE_RATE_HZ, subtype="PCM_16")
    warnings = []
    samples = load_audio(str(wav), warn=warnings.append)
    assert len(warnings) == 1 and str(wav) in warnings[0] and "2 channels" in warnings[0]
    # PCM_16 reads back as int / 32768; the mean of two such values is exact in float32 (17 bits).
    expected = torch.from_numpy((ints[:, 0].astype(np.int32) + ints[:, 1]) / 65536.0).float()
    assert torch.equal(samples, expected)


def test_load_audio_16k_mono_is_untouched(tmp_path):
    ints = np.random.default_rng(1).integers(-32768, 32767, size=1234, dtype=np.int16)
    wav = tmp_path / "mono.wav"
    sf.write(wav, ints, SAMPLE_RATE_HZ, subtype="PCM_16")
    warnings = []
    samples = load_audio(str(wav), warn=warnings.append)
    assert warnings == []
    assert torch.equal(samples, torch.from_numpy(ints / 32768.0).float())


# The process's peak resident memory in KiB, as an expression for 'python -c'. Not getrusage's ru_maxrss:
# Linux carries it across exec, so a child of the test process would report the test process's peak.
PEAK_RSS_KIB = "next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))"


def test_load_audio_any_rate_in_bounded_memory(tmp_path):
    """1 s at 44101 Hz (rates whose common divisor is 1): torchaudio's resampling kernel grew with the
    rates' ratio to 12.1 GB; the whole process, torch included, must stay under 1 GB."""
    wav = _write_wav(tmp_path / "odd-rate.wav", _tone(44101, 44101), 44101)
    code = ("import sys; from asr.audio import load_audio; x = load_audio(sys.argv[1], warn=lambda m: None); "
            f"print(x.numel(), {PEAK_RSS_KIB})")
    out = subprocess.run([sys.executable, "-c", code, str(wav)], capture_output=True, text=True, check=True).stdout
    samples, peak_kib = map(int, out.split())
    assert samples == SAMPLE_RATE_HZ
    assert peak_kib < 1 << 20, f"peak RSS {peak_kib / 1024:.0f} MiB"


def test_transcribe_one_hour_in_bounded_memory(tiny_checkpoint, tmp_path):
    """One hour of quiet noise (16-bit, 16 kHz): encoded at once it peaked at 3.8 GB; chunk by chunk the
    whole process, torch included, stays under 1 GB."""
    wav = tmp_path / "hour.wav"
    rng = np.random.default_rng(0)
    with sf.SoundFile(wav, "w", SAMPLE_RATE_HZ, 1, subtype="PCM_16") as f:
        for _ in range(60):
            f.write((0.01 * rng.standard_normal(SAMPLE_RATE_HZ * 60)).astype(np.float32))
    code = f"import sys; from asr.cli import main; rc = main(sys.argv[1:]); print({PEAK_RSS_KIB}, file=sys.stderr); sys.exit(rc)"
    p = subprocess.run([sys.executable, "-c", code, "transcribe", str(wav), "--checkpoint", str(tiny_checkpoint.path)],
                       capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stderr
    peak_kib = int(p.stderr.strip().splitlines()[-1])
    assert peak_kib < 1 << 20, f"peak RSS {peak_kib / 1024:.0f} MiB"


def test_transcribe_long_recording_equals_offline(asr_cli, emitting_checkpoint, tiny_corpus, tmp_path):
    """Past OFFLINE_MAX_SECONDS the recording is encoded chunk by chunk: the same text as at once."""
    from asr.checkpoint import checkpoint_tokenizer, load_model
    from asr.cli import OFFLINE_MAX_SECONDS
    from asr.decode import transcribe

    pieces = [sf.read(f, dtype="float32")[0] for f in tiny_flacs(tiny_corpus)]
    samples = np.concatenate(pieces * (OFFLINE_MAX_SECONDS * SAMPLE_RATE_HZ // sum(map(len, pieces)) + 2))
    assert samples.size > OFFLINE_MAX_SECONDS * SAMPLE_RATE_HZ
    wav = tmp_path / "long.wav"
    sf.write(wav, samples, SAMPLE_RATE_HZ, subtype="FLOAT")
    r = asr_cli("transcribe", wav, "--checkpoint", emitting_checkpoint)
    assert r.returncode == 0, r.stderr
    model, cfg, ckpt = load_model(emitting_checkpoint)
    offline = transcribe(model, checkpoint_tokenizer(ckpt, cfg, str(emitting_checkpoint)), torch.from_numpy(samples))
    assert offline and r.stdout.strip() == offline


def _float_wav(path, samples, rate):
    sf.write(path, np.asarray(samples, dtype=np.float32), rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize("value, index, channels, rate", [
    (np.nan, 4960, 1, SAMPLE_RATE_HZ),  # the NaN at 0.31 s
    (np.inf, 0, 1, SAMPLE_RATE_HZ),
    (-np.inf, 70000, 2, 44100),  # in the second block read, second channel, before resampling
], ids=["nan", "inf-first", "minus-inf-stereo-44k"])
def test_transcribe_non_finite_samples(asr_cli, tiny_checkpoint, tmp_path, value, index, channels, rate):
    x = np.repeat(_tone(2 * rate, rate)[:, None], channels, axis=1)
    x[index, channels - 1] = value
    wav = _float_wav(tmp_path / "bad.wav", x, rate)
    r = asr_cli("transcribe", wav, "--checkpoint", tiny_checkpoint.path)
    assert_user_error(r, str(wav), f"sample {index} (at {index / rate:.3f} s)", "non-finite")
    assert r.stdout == ""


def test_load_audio_errors(tmp_path):
    empty = _write_wav(tmp_path / "empty.wav", np.zeros(0), SAMPLE_RATE_HZ)
    with pytest.raises(UserError, match="no samples"):
        load_audio(str(empty))
    with pytest.raises(UserError, match="no such audio file"):
        load_audio(str(tmp_path / "missing.wav"))


# ---- the same, through a fresh interpreter -----------------------------------------------------


def test_fresh_interpreter(tiny_corpus, tiny_checkpoint, tmp_path):
    """Two cases as real ``python -m asr.cli`` processes, started together (each pays ~3 s of
    ``import torch``/``lhotse``), so import-time warnings would show: prepare with a corrupt flac
    exits 2 with one ``error:`` line; transcribe of an 8 kHz stereo wav exits 0 with exactly two
    one-line warnings and the transcript on stdout."""
    root = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, root)
    bad_flac = _flacs(root, "test")[0]
    _corrupt(bad_flac)
    stereo_8k = tmp_path / "stereo8k.wav"
    sf.write(stereo_8k, np.stack([_tone(8000, 8000), _tone(8000, 8000, 300)], axis=1), 8000, subtype="PCM_16")

    prepare = start_asr_subprocess("prepare", "librispeech", "--root", root, "--out", tmp_path / "m", cwd=tmp_path)
    transcribe = start_asr_subprocess("transcribe", stereo_8k, "--checkpoint", tiny_checkpoint.path, cwd=tmp_path)
    prepared, transcribed = finish_asr_subprocess(prepare), finish_asr_subprocess(transcribe)

    assert_user_error(prepared, str(bad_flac), "re-download")
    assert transcribed.returncode == 0 and "Traceback" not in transcribed.stderr, transcribed.stderr
    lines = transcribed.stderr.splitlines()
    assert len(lines) == 2, transcribed.stderr
    assert all(line.startswith("warning: ") and str(stereo_8k) in line for line in lines), lines
    assert "2 channels" in lines[0] and "8000 Hz" in lines[1]
    assert len(transcribed.stdout.splitlines()) == 1  # the transcript (untrained model: any text)


# ---- option values (checked for every verb before it runs) -------------------------------------


@pytest.mark.parametrize("args, expected", [
    (["transcribe", "a.wav", "--checkpoint", "x.pt", "--beam", "0"], "--beam 0: must be in [1, 1000]"),
    (["transcribe", "a.wav", "--checkpoint", "x.pt", "--beam", "-3"], "--beam -3"),
    (["decode", "--checkpoint", "x.pt", "--cuts", "c.jsonl.gz", "--out", "d", "--threads", "0"], "--threads 0"),
    (["stream", "model", "a.wav", "--tail-padding", "1e9"], "--tail-padding 1000000000.0: must be in [0, 60]"),
    (["stream", "model", "a.wav", "--tail-padding", "nan"], "--tail-padding nan"),
    (["stream", "model", "a.wav", "--hotwords-score", "1e308"], "--hotwords-score 1e+308"),
    (["stream", "model", "a.wav", "--hotwords-score=-1e308"], "--hotwords-score -1e+308"),
    (["transcribe", "a.wav", "--checkpoint", "x.pt", "--chunk-feature-frames", "100000"], "--chunk-feature-frames 100000"),
    (["export", "--checkpoint", "x.pt", "--out", "o", "--num-calib", "0"], "--num-calib 0"),
])
def test_option_values_out_of_range(asr_cli, args, expected):
    assert_user_error(asr_cli(*args), expected)


# ---- cut manifests and feature archives (asr decode --cuts) -------------------------------------


def _manifest_lines(path) -> list[str]:
    return gzip.decompress(path.read_bytes()).decode().splitlines()


def _write_manifest(path, lines) -> None:
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


def _decode(asr_cli, checkpoint, cuts, out):
    return asr_cli("decode", "--checkpoint", checkpoint, "--cuts", cuts, "--out", out)


@pytest.mark.parametrize("damage", ["empty-file", "half-gzip", "bad-json-line", "not-a-cut", "no-cuts"])
def test_decode_damaged_manifest(asr_cli, tiny_checkpoint, tiny_fbank, tmp_path, damage):
    src = tiny_fbank / "cuts_test.jsonl.gz"
    bad = tmp_path / "cuts_test.jsonl.gz"
    lines = _manifest_lines(src)
    if damage == "empty-file":
        bad.write_bytes(b"")
    elif damage == "half-gzip":
        bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    elif damage == "bad-json-line":
        _write_manifest(bad, [lines[0], lines[1][: len(lines[1]) // 2], *lines[2:]])
    elif damage == "not-a-cut":
        _write_manifest(bad, [lines[0], '{"hello": "world"}'])
    else:
        _write_manifest(bad, [])
    r = _decode(asr_cli, tiny_checkpoint.path, bad, tmp_path / "decode")
    assert_user_error(r, str(bad))
    assert not (tmp_path / "decode").exists()


@pytest.fixture
def fbank_copy(tiny_fbank, tmp_path):
    """The tiny test manifest and its archive in a folder of their own, the archive's path rewritten."""
    folder = tmp_path / "fbank"
    folder.mkdir()
    shutil.copy(tiny_fbank / "feats_test.lca", folder / "feats_test.lca")
    old = str(tiny_fbank / "feats_test.lca")
    _write_manifest(folder / "cuts_test.jsonl.gz",
                    [line.replace(old, str(folder / "feats_test.lca")) for line in _manifest_lines(tiny_fbank / "cuts_test.jsonl.gz")])
    return folder


def test_decode_missing_feature_archive(asr_cli, tiny_checkpoint, fbank_copy, tmp_path):
    (fbank_copy / "feats_test.lca").unlink()
    r = _decode(asr_cli, tiny_checkpoint.path, fbank_copy / "cuts_test.jsonl.gz", tmp_path / "decode")
    assert_user_error(r, str(fbank_copy / "feats_test.lca"), "missing", "asr features")


def test_decode_damaged_feature_archive(asr_cli, tiny_checkpoint, fbank_copy, tmp_path):
    _corrupt(fbank_copy / "feats_test.lca")
    r = _decode(asr_cli, tiny_checkpoint.path, fbank_copy / "cuts_test.jsonl.gz", tmp_path / "decode")
    assert_user_error(r, str(fbank_copy / "feats_test.lca"), "asr features")


def test_decode_manifest_with_relative_paths_from_another_folder(asr_cli, tiny_checkpoint, fbank_copy, tmp_path,
                                                                 monkeypatch):
    """A project's manifest records its archive relative to the folder 'asr features' ran in
    (data/fbank/feats_test.lca); decoding it from elsewhere finds the archive beside the manifest and
    gives the same result as from the project folder."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    shutil.move(fbank_copy, project / "data" / "fbank")
    manifest = project / "data" / "fbank" / "cuts_test.jsonl.gz"
    absolute = str(fbank_copy / "feats_test.lca")  # as the manifest records it
    _write_manifest(manifest, [line.replace(absolute, "data/fbank/feats_test.lca") for line in _manifest_lines(manifest)])
    monkeypatch.chdir(project)
    here = _decode(asr_cli, tiny_checkpoint.path, manifest, tmp_path / "here")
    monkeypatch.chdir(tmp_path)
    elsewhere = _decode(asr_cli, tiny_checkpoint.path, manifest, tmp_path / "elsewhere")
    assert here.returncode == 0 and elsewhere.returncode == 0, (here.stderr, elsewhere.stderr)
    recogs = [sorted(p.read_text() for p in (tmp_path / d).glob("recogs-*.txt")) for d in ("here", "elsewhere")]
    assert recogs[0] and recogs[0] == recogs[1]
