"""Batches from lhotse cuts with cached features: padded features, lengths and BPE token ids.

Shape legend: N batch, T frames, F mel bins, U tokens.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from lhotse import load_manifest_lazy
from lhotse.utils import fastcopy

from asr.errors import UserError, first_line
from asr.fileio import find_recorded_path


def collate(cuts, tokenizer) -> dict:
    """A list of cuts -> ``{"x", "x_lens", "y", "y_lens", "texts", "ids"}`` (features zero padded,
    tokens padded with blank)."""
    feats = [torch.from_numpy(cut_features(c)) for c in cuts]
    x_lens = torch.tensor([f.size(0) for f in feats])
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)  # (N, T, F), zero padded
    texts = [" ".join(s.text for s in c.supervisions) for c in cuts]
    ys = [torch.tensor(tokenizer.encode(t), dtype=torch.long) for t in texts]
    y_lens = torch.tensor([y.numel() for y in ys])
    y = torch.nn.utils.rnn.pad_sequence(ys, batch_first=True)  # (N, U), padded with blank (0)
    return {"x": x, "x_lens": x_lens, "y": y, "y_lens": y_lens, "texts": texts, "ids": [c.id for c in cuts]}


def cut_features(cut):
    """A cut's feature matrix; a UserError naming the archive if it is missing or damaged."""
    try:
        feats = cut.load_features()
    except Exception as e:  # lilcom, numpy and lhotse raise many types for damaged or missing data
        raise UserError(f"{cut.features.storage_path}: cannot read the features of cut {cut.id} ({first_line(e)}); "
                        "the archive is damaged or missing: run 'asr features' again") from None
    if feats.ndim != 2 or not np.isfinite(feats).all():
        raise UserError(f"{cut.features.storage_path}: the features of cut {cut.id} are damaged (shape {feats.shape} or "
                        "non-finite values); run 'asr features' again")
    return feats


def _resolve_storage(manifest: Path, storage: str) -> str:
    """A feature archive's path as a cut records it -> a path that exists (``asr.fileio.find_recorded_path``)."""
    found = find_recorded_path(manifest, storage)
    if found is not None:
        return str(found)
    raise UserError(f"{manifest}: its features are stored in {storage}, which is missing (looked beside the manifest "
                    "and in the current folder); run 'asr features' again")


def load_cuts(path: str):
    """A cut manifest with features, read through once so that a damaged file fails here, with the cut it
    fails at, and not hours into training; relative feature paths resolved (:func:`_resolve_storage`)."""
    manifest = Path(path)
    if not manifest.is_file():
        raise UserError(f"{path}: no such cut manifest; run 'asr features' first (or fix data.*_cuts in the config)")
    storages: dict[str, str] = {}
    count = 0
    try:
        for cut in load_manifest_lazy(path):
            if not cut.has_features:
                raise UserError(f"{path}: cut {cut.id} has no features; pass the manifest written by 'asr features'")
            storage = cut.features.storage_path
            if storage not in storages:
                storages[storage] = _resolve_storage(manifest, storage)
            count += 1
    except UserError:
        raise
    except Exception as e:  # gzip, JSON and lhotse raise many types for a damaged file
        raise UserError(f"{path}: unreadable after {count} cuts ({first_line(e)}): the file is damaged or not a cut "
                        "manifest; run 'asr features' again") from None
    if count == 0:
        raise UserError(f"{path}: the manifest holds no cuts; prepare the data again")
    cuts = load_manifest_lazy(path)
    if any(resolved != storage for storage, resolved in storages.items()):
        cuts = cuts.map(lambda c: fastcopy(c, features=fastcopy(c.features, storage_path=storages[c.features.storage_path])))
    return cuts


def read_texts(path: str) -> list[str]:
    """Supervision texts of a cut manifest (features not needed), e.g. to train the BPE model."""
    if not Path(path).is_file():
        raise UserError(f"{path}: no such cut manifest; run 'asr prepare ...' first")
    return [s.text for c in load_manifest_lazy(path) for s in c.supervisions]
