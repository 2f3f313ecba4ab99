"""Checkpoints: atomic writes, strict loading (``torch.load(weights_only=True)``), averaging.

A checkpoint is a dict of tensors and plain values only:
``format``, ``config`` (the TrainConfig as a dict), ``model``, ``optimizer``, ``scheduler``,
``step``, ``epoch``, ``batch_in_epoch``, ``rng`` (torch generator states), ``train_seconds``,
``params``. Anything without ``format == FORMAT`` is refused as foreign.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from asr.errors import UserError
from asr.fileio import atomic_write

FORMAT = "ondevice-asr-checkpoint-v1"


def save_checkpoint(obj: dict, path: str | Path) -> None:
    """Write ``obj`` to ``path`` through a temporary file and a rename (never half-written)."""
    with atomic_write(path) as tmp:
        torch.save({"format": FORMAT, **obj}, tmp)


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dict; UserError if it is missing, unreadable or not ours."""
    p = Path(path)
    hint = "pass a .pt file written by 'asr train' (e.g. exp/demo/final.pt)"
    if p.is_dir():
        raise UserError(f"{path}: is a folder, not a checkpoint; {hint}")
    if not p.is_file():
        raise UserError(f"{path}: checkpoint not found; {hint}")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise before our one line
            warnings.simplefilter("ignore")
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load of arbitrary bytes raises almost any type (KeyError on text, ...)
        if isinstance(e, pickle.UnpicklingError) and zipfile.is_zipfile(p):
            # torch's own message is many lines with terminal escapes: say what it means instead.
            reason = "a torch.save file that pickles Python objects (e.g. a whole nn.Module), not plain tensors"
        else:
            reason = f"not a file written by torch.save: {type(e).__name__}"
        raise UserError(f"{path}: not an ondevice-asr checkpoint ({reason}); {hint}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path}: not an ondevice-asr checkpoint (foreign or older format); {hint}")
    missing = [k for k in ("config", "model") if k not in ckpt]
    if missing:
        raise UserError(f"{path}: checkpoint lacks {', '.join(missing)}; {hint}")
    return ckpt


def load_model(path: str | Path):
    """(model in eval mode, TrainConfig, checkpoint dict) from a checkpoint file."""
    from asr.config import TrainConfig, from_dict
    from asr.models.registry import build_model

    ckpt = read_checkpoint(path)
    cfg = from_dict(TrainConfig, ckpt["config"], str(path))
    model = build_model(cfg.model)
    method = None
    if cfg.compression is not None:
        from asr.compression import attach_buffers, handler

        if ckpt.get("compressed"):  # a converted model: plain weights + codebook / mask buffers
            attach_buffers(model, ckpt["model"])
        else:  # a step checkpoint of a compression run: its structure, then converted below
            method = handler(cfg.compression)
            method.prepare(model)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError, AttributeError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path}: its weights do not fit the model its config describes ({first}); "
                        "pass a .pt file written by 'asr train'") from None
    if method is not None:
        method.convert_loaded(model)
    model.eval()
    return model, cfg, ckpt


def average_checkpoints(paths: list[str | Path]) -> dict:
    """The last checkpoint with its model weights replaced by the element-wise mean over ``paths``
    (integer buffers are taken from the last one)."""
    ckpts = [read_checkpoint(p) for p in paths]
    if not ckpts:
        raise UserError("no checkpoints to average; pass at least one")
    last = ckpts[-1]["model"]
    for p, c in zip(paths, ckpts):
        shapes = {k: tuple(v.shape) for k, v in c["model"].items()}
        if shapes != {k: tuple(v.shape) for k, v in last.items()}:
            raise UserError(f"{p}: its model differs from {paths[-1]}'s (other weights or shapes); "
                            "average checkpoints of one training run only")
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
