"""``prepare_librispeech`` and ``compute_fbank`` on the tiny LibriSpeech-layout corpus.

Manifests must mirror the tree exactly (one cut per transcript line, named like the utterance,
with its text and the flac's duration); cached features must equal :func:`asr.features.fbank` of
the audio up to lilcom's rounding, with exactly the same number of frames.
"""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch
from lhotse import CutSet, RecordingSet, SupervisionSet

from asr.audio import load_audio
from asr.data.fbank import compute_fbank
from asr.data.librispeech import find_parts, prepare_librispeech
from asr.features import fbank, num_frames
from asr.frontend import NUM_MEL_BINS
from tests.conftest import assert_user_error

PARTS = ["dev", "test", "train"]
# LilcomChunkyWriter stores integer multiples of 2^tick_power (lhotse's default tick_power = -5),
# so every value is rounded to the nearest 1/32: |stored - exact| <= 2^-6 = 0.015625. Measured on
# the tiny corpus: max |diff| = 0.015625 (the bound is reached), mean about 0.0078.
LILCOM_TOL = 2.0**-6 + 1e-6


def _transcripts(part_dir) -> dict[str, str]:
    """``{utt_id: text}`` read independently of the code under test."""
    out = {}
    for trans in part_dir.glob("*/*/*.trans.txt"):
        for line in trans.read_text().splitlines():
            if line.strip():
                utt_id, text = line.split(" ", 1)
                out[utt_id] = text
    return out


def test_parts_found(tiny_corpus):
    assert find_parts(tiny_corpus) == PARTS


def test_counts_equal_transcript_lines(tiny_corpus, tiny_manifests):
    for part in PARTS:
        expected = _transcripts(tiny_corpus / part)
        assert expected, f"the tiny corpus has no transcripts in {part}"
        cuts = CutSet.from_file(tiny_manifests / f"cuts_{part}.jsonl.gz")
        recordings = RecordingSet.from_file(tiny_manifests / f"librispeech_recordings_{part}.jsonl.gz")
        supervisions = SupervisionSet.from_file(tiny_manifests / f"librispeech_supervisions_{part}.jsonl.gz")
        assert len(cuts) == len(recordings) == len(supervisions) == len(expected), part


def test_cuts_mirror_the_tree(tiny_corpus, tiny_manifests):
    """Each cut: id = utterance id = its flac's name, text = the transcript, duration and samples =
    the flac's, speaker = the id's first field."""
    for part in PARTS:
        texts = _transcripts(tiny_corpus / part)
        flacs = {p.stem: p for p in (tiny_corpus / part).glob("*/*/*.flac")}
        cuts = CutSet.from_file(tiny_manifests / f"cuts_{part}.jsonl.gz")
        assert sorted(c.id for c in cuts) == sorted(texts)
        for cut in cuts:
            info = sf.info(str(flacs[cut.id]))
            (sup,) = cut.supervisions
            assert sup.id == cut.recording.id == cut.id
            assert sup.text == texts[cut.id]
            assert sup.speaker == cut.id.split("-")[0]
            assert cut.recording.sources[0].source == str(flacs[cut.id])
            assert cut.sampling_rate == info.samplerate == 16000
            assert cut.recording.num_samples == info.frames
            assert cut.duration == sup.duration == info.frames / info.samplerate
            assert cut.start == sup.start == 0


def test_prepare_selected_parts_only(tiny_corpus, tmp_path):
    summary = prepare_librispeech(str(tiny_corpus), str(tmp_path), ["dev"])
    assert summary == {"dev": len(_transcripts(tiny_corpus / "dev"))}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cuts_dev.jsonl.gz", "librispeech_recordings_dev.jsonl.gz", "librispeech_supervisions_dev.jsonl.gz"]


def test_prepare_missing_part_errors(asr_cli, tiny_corpus, tmp_path):
    out = tmp_path / "manifests"
    line = assert_user_error(asr_cli("prepare", "librispeech", "--root", tiny_corpus, "--out", out,
                                     "--parts", "dev", "train-clean-100"), str(tiny_corpus), "'train-clean-100'")
    assert "available parts: dev, test, train" in line
    assert not out.exists()  # checked before anything is written


def test_features_equal_offline_fbank(tiny_manifests, tiny_fbank):
    """Cached frames == fbank(load_audio(flac)) within lilcom's rounding; frame counts exact."""
    worst = 0.0
    for part in PARTS:
        prepared = {c.id: c for c in CutSet.from_file(tiny_manifests / f"cuts_{part}.jsonl.gz")}
        for cut in CutSet.from_file(tiny_fbank / f"cuts_{part}.jsonl.gz"):
            if "_sp" in cut.id:
                continue
            assert cut.id in prepared
            feats = torch.from_numpy(cut.load_features())
            expected = fbank(load_audio(cut.recording.sources[0].source))
            assert cut.num_frames == num_frames(cut.recording.num_samples) == expected.shape[0]
            assert feats.shape == (cut.num_frames, NUM_MEL_BINS) == expected.shape
            diff = (feats - expected).abs().max().item()
            worst = max(worst, diff)
            assert diff <= LILCOM_TOL, f"{cut.id}: cached vs offline fbank max |diff| {diff:.6f} > {LILCOM_TOL}"
    print(f"cached vs offline fbank: max |diff| {worst:.6f} (bound {LILCOM_TOL:.6f})")


def test_speed_perturbation_triples_train(tiny_manifests, tiny_fbank):
    train = CutSet.from_file(tiny_manifests / "cuts_train.jsonl.gz")
    perturbed = {c.id: c for c in CutSet.from_file(tiny_fbank / "cuts_train.jsonl.gz")}
    assert len(perturbed) == 3 * len(train)
    assert set(perturbed) == {f"{c.id}{suffix}" for c in train for suffix in ("", "_sp0.9", "_sp1.1")}
    for cut in train:
        for factor in (0.9, 1.1):
            sp = perturbed[f"{cut.id}_sp{factor}"]
            # speed x f keeps round(S / f) samples (lhotse's rounding); frames follow from samples
            assert abs(sp.recording.num_samples - cut.recording.num_samples / factor) <= 1
            assert sp.num_frames == num_frames(sp.recording.num_samples) == sp.load_features().shape[0]
            assert sp.supervisions[0].text == cut.supervisions[0].text
    for part in ["dev", "test"]:  # not perturbed
        assert len(CutSet.from_file(tiny_fbank / f"cuts_{part}.jsonl.gz")) == len(
            CutSet.from_file(tiny_manifests / f"cuts_{part}.jsonl.gz"))


def test_features_skip_existing_part(tiny_manifests, tiny_fbank):
    assert compute_fbank(str(tiny_manifests), str(tiny_fbank), ["dev"], progress=False) == {"dev": "exists"}


def test_features_resample_other_rates(tmp_path, capsys):
    """A corpus recorded at 8 kHz: features are computed at 16 kHz, with one warning line."""
    chapter = tmp_path / "root" / "dev" / "61" / "70968"
    chapter.mkdir(parents=True)
    lines = []
    for i, n in enumerate([8000, 12345]):
        utt_id = f"61-70968-{i:04d}"
        tone = 0.3 * np.sin(2 * np.pi * 300 * np.arange(n) / 8000)
        sf.write(chapter / f"{utt_id}.flac", tone, 8000, subtype="PCM_16")
        lines.append(f"{utt_id} HELLO NUMBER {i}\n")
    (chapter / "61-70968.trans.txt").write_text("".join(lines))
    prepare_librispeech(str(tmp_path / "root"), str(tmp_path / "m"))
    capsys.readouterr()
    assert compute_fbank(str(tmp_path / "m"), str(tmp_path / "f"), ["dev"], progress=False) == {"dev": 2}
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and "8000 Hz" in err[0], err
    for cut, n in zip(CutSet.from_file(tmp_path / "f" / "cuts_dev.jsonl.gz"), [8000, 12345]):
        assert cut.sampling_rate == 16000
        assert cut.num_frames == num_frames(2 * n) == cut.load_features().shape[0]


def test_features_workers_equal_in_process(tiny_manifests, tmp_path, monkeypatch):
    """Worker processes (batches of 4 cuts here, so the pool gets several) write the same cuts and
    the same stored features, in the same order, as the in-process path."""
    import asr.data.fbank as fbank_module

    monkeypatch.setattr(fbank_module, "BATCH_CUTS", 4)
    out = {}
    for workers in (1, 2):
        out[workers] = tmp_path / f"w{workers}"
        assert compute_fbank(str(tiny_manifests), str(out[workers]), ["train"], ["train"], progress=False,
                             num_workers=workers) == {"train": 36}
    one, two = (list(CutSet.from_file(out[w] / "cuts_train.jsonl.gz")) for w in (1, 2))
    assert [c.id for c in one] == [c.id for c in two]
    for a, b in zip(one, two):
        assert a.features.num_frames == b.features.num_frames and a.features.storage_key == b.features.storage_key
        np.testing.assert_array_equal(a.load_features(), b.load_features())
    assert (out[1] / "feats_train.lca").read_bytes() == (out[2] / "feats_train.lca").read_bytes()
