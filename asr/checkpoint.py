"""Checkpoints: atomic writes, strict loading (``torch.load(weights_only=True)``), averaging.

A checkpoint is a dict of tensors and plain values only:
``format``, ``config`` (the TrainConfig as a dict), ``model``, ``optimizer``, ``scheduler``,
``step``, ``epoch``, ``batch_in_epoch``, ``rng`` (torch generator states), ``train_seconds``,
``params``. Anything without ``format == FORMAT`` is refused as foreign.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from asr.errors import UserError

FORMAT = "ondevice-asr-checkpoint-v1"


def save_checkpoint(obj: dict, path: str | Path) -> None:
    """Write ``obj`` to ``path`` through a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({"format": FORMAT, **obj}, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dict; UserError if it is missing, unreadable or not ours."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: checkpoint not found; pass a .pt file written by 'asr train' (e.g. exp/demo/final.pt)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError, AttributeError, TypeError) as e:
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise UserError(f"{path}: not a loadable ondevice-asr checkpoint ({reason}); pass a .pt file written by 'asr train'") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path}: not an ondevice-asr checkpoint (foreign or older format); pass a .pt file written by 'asr train'")
    return ckpt


def load_model(path: str | Path):
    """(model in eval mode, TrainConfig, checkpoint dict) from a checkpoint file."""
    from asr.config import TrainConfig, from_dict
    from asr.models.registry import build_model

    ckpt = read_checkpoint(path)
    cfg = from_dict(TrainConfig, ckpt["config"], str(path))
    model = build_model(cfg.model)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, cfg, ckpt


def average_checkpoints(paths: list[str | Path]) -> dict:
    """The last checkpoint with its model weights replaced by the element-wise mean over ``paths``
    (integer buffers are taken from the last one)."""
    ckpts = [read_checkpoint(p) for p in paths]
    if not ckpts:
        raise UserError("no checkpoints to average; pass at least one")
    out = dict(ckpts[-1])
    avg = {}
    for name, value in ckpts[-1]["model"].items():
        if value.is_floating_point():
            avg[name] = sum(c["model"][name].double() for c in ckpts).div(len(ckpts)).to(value.dtype)
        else:
            avg[name] = value
    out["model"] = avg
    out["averaged_from"] = [str(p) for p in paths]
    out.pop("format", None)
    return out
