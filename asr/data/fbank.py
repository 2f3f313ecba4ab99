"""Compute and cache fbank features for prepared cuts (``asr features``).

Reads ``<manifests>/cuts_<part>.jsonl.gz``; writes ``<out>/feats_<part>.lca`` (lhotse's lilcom
chunky storage, lossy: values are rounded to multiples of 2^-5, so they are within 2^-6 of
:func:`asr.features.fbank`) and ``<out>/cuts_<part>.jsonl.gz`` with the features attached.
Recordings at another sample rate are resampled to 16 kHz, with a warning. Training parts can
get speed-perturbed copies (factors 0.9 and 1.1, as icefall does; ids get an ``_sp0.9`` suffix).
Both files are written under temporary names and renamed at the end, so a crash leaves nothing
that looks finished. A part whose output exists is skipped (delete it to recompute).

Audio decoding, resampling and fbank run in worker processes, one torch thread each (one process
with two torch threads spent half its CPU time in the kernel on these small per-cut ops; 2 workers
are 1.4x faster on 2 cores); the parent compresses and writes in cut order, so the output does not
depend on the number of workers (test).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from lhotse import CutSet, LilcomChunkyWriter
from lhotse.features import Features
from lhotse.features.base import FeatureExtractor, register_extractor, store_feature_array
from lhotse.utils import fastcopy
from tqdm import tqdm

from asr.audio import BadAudio, check_audio
from asr.errors import UserError, first_line
from asr.features import fbank
from asr.fileio import atomic_write
from asr.frontend import FRAME_SHIFT_MS, NUM_MEL_BINS, SAMPLE_RATE_HZ


@dataclass
class KaldiFbankConfig:
    num_mel_bins: int = NUM_MEL_BINS


@register_extractor  # lhotse's registry of feature types, as lhotse's own extractors register
class KaldiFbank(FeatureExtractor):
    """lhotse extractor calling :func:`asr.features.fbank` (the sherpa-onnx front end), so cached
    training features equal the features computed at run time."""

    name = "ondevice-asr-kaldi-fbank"
    config_type = KaldiFbankConfig

    @property
    def frame_shift(self) -> float:
        return FRAME_SHIFT_MS / 1000

    def feature_dim(self, sampling_rate: int) -> int:
        return NUM_MEL_BINS

    def extract(self, samples, sampling_rate: int) -> np.ndarray:
        if sampling_rate != SAMPLE_RATE_HZ:
            raise ValueError(f"features need {SAMPLE_RATE_HZ} Hz audio, got {sampling_rate} Hz")
        x = torch.as_tensor(np.asarray(samples, dtype=np.float32)).reshape(-1)
        return fbank(x).numpy()

    def to_dict(self):
        return {"feature_type": self.name, **asdict(self.config)}


def _cut_source(cut) -> str:
    try:
        return cut.recording.sources[0].source
    except Exception:
        return cut.id


def _decode_error(cut, message: str) -> UserError:
    """One line naming the audio file. lhotse's AudioLoadingError spans a dozen lines (every backend
    it tried), so the reason comes from decoding the file again with :func:`check_audio`."""
    source = _cut_source(cut)
    reason = message
    if Path(source).is_file():
        try:
            check_audio(Path(source))
        except BadAudio as bad:
            reason = bad.reason
    elif source != cut.id:
        reason = "the file is missing"
    return UserError(f"{source}: cannot compute features for cut {cut.id}: {reason}; "
                     "restore or re-download this file and run 'asr prepare' again")


BATCH_CUTS = 32  # cuts per worker task: small enough to balance, large enough to amortize pickling


def _extract_batch(cuts: list) -> list:
    """Per cut ``(features, num_samples, None)`` or ``(None, 0, error line)``."""
    extractor = KaldiFbank()
    results = []
    for cut in cuts:
        try:
            samples = cut.load_audio()
            results.append((extractor.extract(samples, cut.sampling_rate), samples.shape[1], None))
        except Exception as e:
            results.append((None, 0, first_line(e)))
    return results


def _init_worker() -> None:
    torch.set_num_threads(1)


def _store(cut, feats, num_samples: int, extractor, writer):
    """``cut`` with ``feats`` written to ``writer`` and attached (what lhotse's
    ``compute_and_store_features`` does, with the features computed elsewhere)."""
    manifest = Features(
        start=cut.start,
        duration=round(num_samples / cut.sampling_rate, ndigits=8),
        type=extractor.name,
        num_frames=feats.shape[0],
        num_features=feats.shape[1],
        frame_shift=extractor.frame_shift,
        sampling_rate=cut.sampling_rate,
        channels=cut.channel,
        storage_type=writer.name,
        storage_path=str(writer.storage_path),
        storage_key=store_feature_array(feats, storage=writer),
    )
    return fastcopy(cut, features=manifest)


def compute_fbank(manifest_dir: str, out_dir: str, parts: list[str], speed_perturb: list[str] = (),
                  progress: bool = True, num_workers: int | None = None) -> dict:
    """Features for each part; ``speed_perturb`` lists the parts that get 0.9x/1.1x copies.
    ``num_workers``: feature processes, default ``min(os.cpu_count(), 8)``; 1 computes in-process."""
    if num_workers is None:
        num_workers = min(os.cpu_count() or 1, 8)
    if num_workers < 1:
        raise UserError(f"num_workers must be at least 1, got {num_workers}")
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
        cut_list = list(cuts)
        batches = [cut_list[i : i + BATCH_CUTS] for i in range(0, len(cut_list), BATCH_CUTS)]
        pool = None
        try:
            if num_workers > 1 and len(batches) > 1:
                # spawn, not fork: the parent may hold torch thread pools that a fork would deadlock on.
                pool = ProcessPoolExecutor(min(num_workers, len(batches)), mp_context=get_context("spawn"),
                                          initializer=_init_worker)
                results = pool.map(_extract_batch, batches)
            else:
                results = map(_extract_batch, batches)
            with LilcomChunkyWriter(str(tmp_storage)) as writer, \
                    tqdm(total=len(cut_list), desc=f"fbank {part}", disable=not progress, mininterval=5) as bar:
                for batch, batch_results in zip(batches, results):
                    for cut, (feats, num_samples, error) in zip(batch, batch_results):
                        if error is not None:
                            raise _decode_error(cut, error)
                        done.append(_store(cut, feats, num_samples, extractor, writer))
                    bar.update(len(batch))
                tmp_name = writer.storage_path
            os.replace(tmp_name, storage)
            fixed = CutSet.from_cuts(_with_storage(c, str(storage)) for c in done)
            with atomic_write(dst) as tmp_cuts:
                fixed.to_file(tmp_cuts)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            for leftover in out.glob(f".*_{part}.tmp-{os.getpid()}*"):
                leftover.unlink()
        summary[part] = len(done)
    return summary


def _at_16k(cuts, src: Path):
    """``cuts`` with every recording at another rate resampled (lazily, by lhotse) to 16 kHz, which
    the features are defined at; one warning line on stderr says how many."""
    rates = sorted({c.sampling_rate for c in cuts} - {SAMPLE_RATE_HZ})
    if not rates:
        return cuts
    count = sum(c.sampling_rate != SAMPLE_RATE_HZ for c in cuts)
    print(f"warning: {src}: {count} recording(s) at {', '.join(f'{r} Hz' for r in rates)}, resampled to "
          f"{SAMPLE_RATE_HZ} Hz", file=sys.stderr)
    return type(cuts).from_cuts([c if c.sampling_rate == SAMPLE_RATE_HZ else c.resample(SAMPLE_RATE_HZ) for c in cuts])


def _with_storage(cut, storage_path: str):
    return fastcopy(cut, features=fastcopy(cut.features, storage_path=storage_path))
