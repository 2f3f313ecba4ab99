"""Batches from lhotse cuts with cached features: padded features, lengths and BPE token ids.

Shape legend: N batch, T frames, F mel bins, U tokens.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lhotse import load_manifest_lazy

from asr.errors import UserError


def collate(cuts, tokenizer) -> dict:
    """A list of cuts -> ``{"x", "x_lens", "y", "y_lens", "texts", "ids"}`` (features zero padded,
    tokens padded with blank)."""
    feats = [torch.from_numpy(c.load_features()) for c in cuts]
    x_lens = torch.tensor([f.size(0) for f in feats])
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)  # (N, T, F), zero padded
    texts = [" ".join(s.text for s in c.supervisions) for c in cuts]
    ys = [torch.tensor(tokenizer.encode(t), dtype=torch.long) for t in texts]
    y_lens = torch.tensor([y.numel() for y in ys])
    y = torch.nn.utils.rnn.pad_sequence(ys, batch_first=True)  # (N, U), padded with blank (0)
    return {"x": x, "x_lens": x_lens, "y": y, "y_lens": y_lens, "texts": texts, "ids": [c.id for c in cuts]}


def load_cuts(path: str):
    if not Path(path).is_file():
        raise UserError(f"{path}: no such cut manifest; run 'asr features' first (or fix data.*_cuts in the config)")
    cuts = load_manifest_lazy(path)
    first = next(iter(cuts), None)
    if first is None:
        raise UserError(f"{path}: the manifest holds no cuts; prepare the data again")
    if not first.has_features:
        raise UserError(f"{path}: cuts have no features; pass the manifest written by 'asr features'")
    return cuts


def read_texts(path: str) -> list[str]:
    """Supervision texts of a cut manifest (features not needed), e.g. to train the BPE model."""
    if not Path(path).is_file():
        raise UserError(f"{path}: no such cut manifest; run 'asr prepare ...' first")
    return [s.text for c in load_manifest_lazy(path) for s in c.supervisions]
