"""Checkpoints: atomic writes, strict loading (``torch.load(weights_only=True)``), versions, averaging,
and the model and tokenizer a checkpoint describes.

A checkpoint is a dict of tensors and plain values only: ``format``, ``config_version``, ``config``
(the TrainConfig as a dict), ``model``, ``tokenizer`` (the BPE model's bytes as a uint8 tensor, so
that a checkpoint decodes wherever it is copied), ``optimizer``, ``scheduler``, ``step``, ``epoch``,
``batch_in_epoch``, ``rng`` (torch generator states), ``train_seconds``, ``params``. Anything without
``format == FORMAT`` is refused as foreign. :func:`read_checkpoint` migrates the config of an older
``config_version`` (``asr.config.migrate_config``); checkpoints written before versions existed are
version 1 and carry no tokenizer.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from asr.compression import attach_buffers, handler
from asr.config import CONFIG_VERSION, TrainConfig, from_dict, migrate_config, to_dict
from asr.errors import UserError, first_line
from asr.fileio import atomic_write, find_recorded_path
from asr.models.registry import build_model
from asr.models.transducer import Transducer
from asr.tokenizer import Tokenizer

FORMAT = "ondevice-asr-checkpoint-v1"


def save_checkpoint(obj: dict, path: str | Path) -> None:
    """Write ``obj`` (whose ``config`` is a current one) to ``path`` through a temporary file and a
    rename (never half-written)."""
    with atomic_write(path) as tmp:
        torch.save({"format": FORMAT, "config_version": CONFIG_VERSION, **obj}, tmp)


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dict with its config migrated to this version; UserError if it is missing,
    unreadable or not ours."""
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
    migrated = migrate_config(ckpt["config"], int(ckpt.get("config_version", 1)), str(path))
    # completed with the defaults of fields added since it was written (e.g. model.biasing: None), so that
    # it compares equal to a config built from it
    ckpt["config"] = to_dict(from_dict(TrainConfig, migrated, str(path)))
    ckpt["config_version"] = CONFIG_VERSION
    return ckpt


def tokenizer_tensor(tokenizer: Tokenizer) -> torch.Tensor:
    """The tokenizer's model as the uint8 tensor a checkpoint carries."""
    return torch.from_numpy(np.frombuffer(tokenizer.to_bytes(), dtype=np.uint8).copy())


def read_float_checkpoint(path: str | Path, hint: str) -> dict:
    """:func:`read_checkpoint` of the float checkpoint a compression run fine-tunes; UserError (with
    ``hint``, the remedy) if it is a compressed one."""
    ckpt = read_checkpoint(path)
    if ckpt["config"].get("compression"):
        raise UserError(f"{path}: is already compressed ({ckpt['config']['compression'].get('method')}); {hint}")
    return ckpt


def carried_tokenizer(ckpt: dict, where: str) -> Tokenizer | None:
    """The tokenizer ``ckpt`` carries; None for checkpoints written before they carried one."""
    if "tokenizer" not in ckpt:
        return None
    return Tokenizer.from_bytes(ckpt["tokenizer"].numpy().tobytes(), f"{where} (its tokenizer)",
                                "pass the tokenizer it was trained with: --bpe-model PATH/bpe.model")


def checkpoint_tokenizer(ckpt: dict, cfg: TrainConfig, where: str, bpe_model: str | None = None) -> Tokenizer:
    """The tokenizer to decode ``ckpt`` with: ``bpe_model`` if given, else the one the checkpoint
    carries, else (checkpoints written before they carried one) the file its config names."""
    if bpe_model:
        tokenizer = Tokenizer(bpe_model)
    elif (carried := carried_tokenizer(ckpt, where)) is not None:
        tokenizer = carried
    elif (found := find_recorded_path(where, cfg.data.bpe_model)) is not None:
        tokenizer = Tokenizer(found)
    else:
        raise UserError(f"{where}: carries no tokenizer (written before checkpoints did) and the one its config names, "
                        f"{cfg.data.bpe_model}, is neither beside it nor found from {Path.cwd()}; pass --bpe-model "
                        "PATH/bpe.model")
    if tokenizer.vocab_size != cfg.model.vocab_size:
        raise UserError(f"{tokenizer.where}: {tokenizer.vocab_size} tokens, but {where} emits {cfg.model.vocab_size}; "
                        "pass the --bpe-model it was trained with")
    return tokenizer


def load_model(path: str | Path) -> tuple[Transducer, TrainConfig, dict]:
    """(model in eval mode, TrainConfig, checkpoint dict) from a checkpoint file. A compression run's
    step checkpoint is converted as it was at that step."""
    ckpt = read_checkpoint(path)
    cfg = from_dict(TrainConfig, ckpt["config"], str(path))
    model = build_model(cfg.model)
    method = None
    if cfg.compression is not None:
        if ckpt.get("compressed"):  # a converted model: plain weights + codebook / mask buffers
            attach_buffers(model, ckpt["model"])
        else:  # a step checkpoint of a compression run: its structure, then converted below
            method = handler(cfg.compression)
            method.prepare(model)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError, AttributeError) as e:
        raise UserError(f"{path}: its weights do not fit the model its config describes ({first_line(e)}); "
                        "pass a .pt file written by 'asr train'") from None
    if method is not None:
        method.convert_loaded(model)
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UserError(f"{path}: weight {name} holds NaN or infinite values (the run that wrote it diverged); "
                            "use an earlier checkpoint of the run, or train again with a lower optim.lr")
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
