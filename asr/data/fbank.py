"""Compute and cache fbank features for prepared cuts (``asr features``).

Reads ``<manifests>/cuts_<part>.jsonl.gz``; writes ``<out>/feats_<part>.lca`` (lhotse's lilcom
chunky storage, lossy: values are rounded to multiples of 2^-5, so they are within 2^-6 of
:func:`asr.features.fbank`) and ``<out>/cuts_<part>.jsonl.gz`` with the features attached.
Recordings at another sample rate are resampled to 16 kHz, with a warning. Training parts can
get speed-perturbed copies (factors 0.9 and 1.1, as icefall does; ids get an ``_sp0.9`` suffix).
Both files are written under temporary names and renamed at the end, so a crash leaves nothing
that looks finished. A part whose output exists is skipped (delete it to recompute).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from asr.errors import UserError
from asr.fileio import atomic_write


def _cut_source(cut) -> str:
    try:
        return cut.recording.sources[0].source
    except Exception:
        return cut.id


def _decode_error(cut, e: Exception) -> UserError:
    """One line naming the audio file. lhotse's AudioLoadingError spans a dozen lines (every backend
    it tried), so the reason comes from decoding the file again with :func:`check_audio`."""
    from asr.data.librispeech import BadAudio, check_audio

    source = _cut_source(cut)
    reason = (str(e).splitlines() or [""])[0] or type(e).__name__
    if Path(source).is_file():
        try:
            check_audio(Path(source))
        except BadAudio as bad:
            reason = bad.reason
    elif source != cut.id:
        reason = "the file is missing"
    return UserError(f"{source}: cannot compute features for cut {cut.id}: {reason}; "
                     "restore or re-download this file and run 'asr prepare' again")


def compute_fbank(manifest_dir: str, out_dir: str, parts: list[str], speed_perturb: list[str] = (), progress: bool = True) -> dict:
    """Features for each part; ``speed_perturb`` lists the parts that get 0.9x/1.1x copies."""
    from lhotse import CutSet, LilcomChunkyWriter
    from tqdm import tqdm

    from asr.features import KaldiFbank

    extractor = KaldiFbank()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for part in parts:
        src = Path(manifest_dir) / f"cuts_{part}.jsonl.gz"
        dst = out / f"cuts_{part}.jsonl.gz"
        if dst.is_file():
            summary[part] = "exists"
            continue
        if not src.is_file():
            raise UserError(f"{src}: no such manifest; run 'asr prepare ...' for part {part!r} first")
        cuts = _at_16k(CutSet.from_file(src), src)
        if part in speed_perturb:
            cuts = cuts + cuts.perturb_speed(0.9) + cuts.perturb_speed(1.1)
        storage = out / f"feats_{part}.lca"
        tmp_storage = out / f".feats_{part}.tmp-{os.getpid()}"
        done = []
        try:
            with LilcomChunkyWriter(str(tmp_storage)) as writer:
                for cut in tqdm(cuts, desc=f"fbank {part}", disable=not progress, mininterval=5):
                    try:
                        done.append(cut.compute_and_store_features(extractor, writer))
                    except Exception as e:
                        raise _decode_error(cut, e) from None
                tmp_name = writer.storage_path
            os.replace(tmp_name, storage)
            fixed = CutSet.from_cuts(_with_storage(c, str(storage)) for c in done)
            with atomic_write(dst) as tmp_cuts:
                fixed.to_file(tmp_cuts)
        finally:
            for leftover in out.glob(f".*_{part}.tmp-{os.getpid()}*"):
                leftover.unlink()
        summary[part] = len(done)
    return summary


def _at_16k(cuts, src: Path):
    """``cuts`` with every recording at another rate resampled (lazily, by lhotse) to 16 kHz, which
    the features are defined at; one warning line on stderr says how many."""
    from asr.features import SAMPLE_RATE_HZ

    rates = sorted({c.sampling_rate for c in cuts} - {SAMPLE_RATE_HZ})
    if not rates:
        return cuts
    count = sum(c.sampling_rate != SAMPLE_RATE_HZ for c in cuts)
    print(f"warning: {src}: {count} recording(s) at {', '.join(f'{r} Hz' for r in rates)}, resampled to "
          f"{SAMPLE_RATE_HZ} Hz", file=sys.stderr)
    return type(cuts).from_cuts([c if c.sampling_rate == SAMPLE_RATE_HZ else c.resample(SAMPLE_RATE_HZ) for c in cuts])


def _with_storage(cut, storage_path: str):
    from lhotse.utils import fastcopy

    return fastcopy(cut, features=fastcopy(cut.features, storage_path=storage_path))
