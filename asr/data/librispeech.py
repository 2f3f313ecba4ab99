"""LibriSpeech (and anything in its layout, e.g. the embedded synthetic corpus) -> lhotse manifests.

Layout read: ``ROOT/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` with one
``<speaker>-<chapter>.trans.txt`` per chapter holding ``<utt-id> <TEXT>`` lines. Output, per part:
``<out>/librispeech_recordings_<part>.jsonl.gz``, ``..._supervisions_<part>.jsonl.gz`` and
``cuts_<part>.jsonl.gz`` (lhotse manifests, one recording = one supervision = one cut), each
written to a temporary file and renamed, so an interrupted run leaves no half-written manifest.

Every audio file is checked while preparing (header read and last sample decoded), so a corrupt or
truncated file is reported here, by name, and not hours later in training.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from asr.errors import UserError

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
    for trans in sorted(part_dir.glob("*/*/*.trans.txt")):
        for lineno, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
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
            texts[utt_id] = " ".join(text.split())
    return texts


def check_audio(path: Path):
    """soundfile info of ``path`` after decoding its last samples; UserError if unreadable/truncated."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            info = (f.samplerate, f.frames, f.channels)
            if f.frames == 0:
                raise UserError(f"{path}: the audio file holds no samples; delete it or its transcript line")
            f.seek(max(0, f.frames - 16))
            tail = f.read(16)
            if len(tail) == 0:
                raise RuntimeError("could not decode the last samples")
    except UserError:
        raise
    except Exception as e:  # libsndfile raises several types for corrupt data
        raise UserError(f"{path}: corrupt or truncated audio ({e}); re-extract or re-download this file") from None
    return info


def _write_atomic(manifest, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.jsonl.gz")
    manifest.to_file(tmp)
    os.replace(tmp, path)


def prepare_librispeech(root: str, out_dir: str = "data/manifests", parts: list[str] | None = None) -> dict:
    """Write lhotse manifests for ``parts`` (default: every part found under ``root``).

    Returns ``{part: number of utterances}``.
    """
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
    from lhotse.audio import AudioSource

    root_p = Path(root)
    if not root_p.is_dir():
        raise UserError(f"{root}: no such directory; pass --root the folder that holds train-clean-100/, dev-clean/, ...")
    available = find_parts(root_p)
    if not available:
        raise UserError(
            f"{root}: no '<part>/<speaker>/<chapter>/*.trans.txt' found; pass --root a LibriSpeech-layout folder "
            "(e.g. download/LibriSpeech or the output of 'asr prepare synth')"
        )
    parts = list(parts) if parts else available
    for part in parts:
        if part not in available:
            raise UserError(f"{root}: part {part!r} not found; available parts: {', '.join(available)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for part in parts:
        part_dir = root_p / part
        texts = read_transcripts(part_dir)
        flacs = {p.stem: p for p in part_dir.glob("*/*/*.flac")}
        if not flacs:
            raise UserError(f"{part_dir}: no .flac audio found; the transcripts there name audio that is missing")
        recordings, supervisions = [], []
        for utt_id in sorted(texts):
            path = flacs.get(utt_id)
            if path is None:
                raise UserError(f"{part_dir}: transcript names {utt_id} but {utt_id}.flac is missing; restore it or drop the line")
            rate, frames, channels = check_audio(path)
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
        _write_atomic(recs, out / f"librispeech_recordings_{part}.jsonl.gz")
        _write_atomic(sups, out / f"librispeech_supervisions_{part}.jsonl.gz")
        _write_atomic(cuts, out / f"cuts_{part}.jsonl.gz")
        summary[part] = len(recordings)
    return summary
