"""LibriSpeech (and anything in its layout, e.g. the embedded synthetic corpus) -> lhotse manifests.

Layout read: ``ROOT/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` with one
``<speaker>-<chapter>.trans.txt`` per chapter holding ``<utt-id> <TEXT>`` lines. Output, per part:
``<out>/librispeech_recordings_<part>.jsonl.gz``, ``..._supervisions_<part>.jsonl.gz`` and
``cuts_<part>.jsonl.gz`` (lhotse manifests, one recording = one supervision = one cut), each
written to a temporary file and renamed, so an interrupted run leaves no half-written manifest.

Every audio file is decoded once while preparing (libsndfile checks each FLAC frame's CRC), so a
corrupt or truncated file is reported here, by name, and not hours later in training. Checking only
the header and the last samples misses damage in the middle of a file. Decoding runs in a thread
pool (cffi releases the GIL around libsndfile calls); one core decodes 16-bit FLAC at roughly
3,000x real time, i.e. about 2 minutes for train-clean-100.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.audio import AudioSource

from asr.audio import check_audio
from asr.errors import UserError
from asr.fileio import atomic_write

UTT_ID = re.compile(r"^\d+-\d+-\d+$")
LIBRISPEECH_PARTS = (
    "dev-clean", "dev-other", "test-clean", "test-other",
    "train-clean-100", "train-clean-360", "train-other-500",
)


def find_parts(root: Path) -> list[str]:
    """Sub-directories of ``root`` that hold at least one ``*.trans.txt`` (sorted)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and next(p.glob("*/*/*.trans.txt"), None))


def read_transcripts(part_dir: Path) -> dict[str, str]:
    """``{utt_id: TEXT}`` from every ``*.trans.txt`` of one part; malformed lines raise UserError."""
    texts: dict[str, str] = {}
    where: dict[str, str] = {}
    for trans in sorted(part_dir.glob("*/*/*.trans.txt")):
        try:
            lines = trans.read_text(encoding="utf-8-sig").splitlines()  # -sig: tolerate a BOM
        except UnicodeDecodeError as e:
            raise UserError(f"{trans}: not UTF-8 text (byte {e.start}); re-save the transcript as UTF-8") from None
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            if not UTT_ID.match(utt_id):
                raise UserError(
                    f"{trans}:{lineno}: transcript line has no utterance id ({line.strip()[:40]!r}); "
                    "each line must read '<speaker>-<chapter>-<utt> TEXT'"
                )
            if not text.strip():
                raise UserError(f"{trans}:{lineno}: utterance {utt_id} has an empty transcript; add its text or remove the line")
            if utt_id in texts:
                raise UserError(f"{trans}:{lineno}: utterance {utt_id} is already listed at {where[utt_id]}; keep one of the two lines")
            texts[utt_id] = " ".join(text.split())
            where[utt_id] = f"{trans}:{lineno}"
    return texts


def test_set(audio_dir: str | Path, max_utts: int | None = None) -> tuple[list[Path], dict[str, str]]:
    """The benchmarks' test set: the first ``max_utts`` (None: all) ``.flac`` files of a LibriSpeech-layout
    folder, sorted, and its transcripts (``{utt_id: TEXT}``); a UserError if there are no files or a
    file has no transcript."""
    d = Path(audio_dir)
    refs = read_transcripts(d)
    files = sorted(d.rglob("*.flac"))[:max_utts]
    if not files:
        raise UserError(f"{d}: no .flac files; pass a LibriSpeech-layout folder such as data/synth-small/test")
    missing = [f for f in files if f.stem not in refs]
    if missing:
        raise UserError(f"{missing[0]}: no transcript for it in {d} (*.trans.txt); pass a LibriSpeech-layout folder")
    return files, refs


def _check_all(paths: list[Path]) -> list[tuple[int, int, int]]:
    """:func:`check_audio` of every path, in threads; the first bad file (in ``paths`` order) raises."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        futures = [pool.submit(check_audio, p) for p in paths]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _write_atomic(manifest, path: Path) -> None:
    with atomic_write(path) as tmp:
        manifest.to_file(tmp)


def prepare_librispeech(root: str, out_dir: str = "data/manifests", parts: list[str] | None = None) -> dict:
    """Write lhotse manifests for ``parts`` (default: every part found under ``root``).

    Returns ``{part: number of utterances}``.
    """
    root_p = Path(root)
    if not root_p.is_dir():
        raise UserError(f"{root}: no such directory; pass --root the folder that holds train-clean-100/, dev-clean/, ...")
    available = find_parts(root_p)
    if not available:
        if next(root_p.glob("*/*/*.trans.txt"), None):  # --root named one part, not the folder of parts
            raise UserError(
                f"{root}: this looks like a single part (it holds <speaker>/<chapter>/*.trans.txt); "
                f"pass --root {root_p.resolve().parent} and --parts {root_p.resolve().name}"
            )
        raise UserError(
            f"{root}: no '<part>/<speaker>/<chapter>/*.trans.txt' found; pass --root a LibriSpeech-layout folder "
            "(e.g. download/LibriSpeech or the output of 'asr prepare synth')"
        )
    parts = list(parts) if parts else available
    for part in parts:
        if part not in available:
            raise UserError(f"{root}: part {part!r} not found; available parts: {', '.join(available)}")
    out = Path(out_dir)
    summary = {}
    for part in parts:
        part_dir = root_p / part
        texts = read_transcripts(part_dir)
        flacs = {p.stem: p for p in part_dir.glob("*/*/*.flac")}
        if not flacs:
            raise UserError(f"{part_dir}: no .flac audio found; the transcripts there name audio that is missing")
        utt_ids = sorted(texts)
        for utt_id in utt_ids:
            if utt_id not in flacs:
                raise UserError(f"{part_dir}: transcript names {utt_id} but {utt_id}.flac is missing; restore it or drop the line")
        infos = _check_all([flacs[u] for u in utt_ids])
        recordings, supervisions = [], []
        for utt_id, (rate, frames, channels) in zip(utt_ids, infos):
            path = flacs[utt_id]
            duration = frames / rate
            speaker = utt_id.split("-")[0]
            recordings.append(
                Recording(
                    id=utt_id,
                    sources=[AudioSource(type="file", channels=list(range(channels)), source=str(path))],
                    sampling_rate=rate,
                    num_samples=frames,
                    duration=duration,
                )
            )
            supervisions.append(
                SupervisionSegment(
                    id=utt_id, recording_id=utt_id, start=0.0, duration=duration, channel=0,
                    text=texts[utt_id], speaker=speaker, language="English",
                )
            )
        recs = RecordingSet.from_recordings(recordings)
        sups = SupervisionSet.from_segments(supervisions)
        # one cut per utterance, named like the utterance (lhotse would append an index)
        cuts = CutSet.from_cuts(c.with_id(c.supervisions[0].id) for c in CutSet.from_manifests(recordings=recs, supervisions=sups))
        out.mkdir(parents=True, exist_ok=True)  # only now: a run that fails early leaves no folder
        _write_atomic(recs, out / f"librispeech_recordings_{part}.jsonl.gz")
        _write_atomic(sups, out / f"librispeech_supervisions_{part}.jsonl.gz")
        _write_atomic(cuts, out / f"cuts_{part}.jsonl.gz")
        summary[part] = len(recordings)
    return summary
