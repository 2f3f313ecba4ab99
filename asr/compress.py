"""``asr compress``: fine-tune a float checkpoint with a compression method through the one training loop.

:func:`compress_config` assembles the run's :class:`asr.config.TrainConfig` from the float checkpoint's
own config, a YAML file with a ``compression:`` section (``recipes/<corpus>/compress-*.yaml``) and
``--set`` overrides; :func:`compress` trains it (``asr.train``), which converts the model at the end.
The methods themselves are in :mod:`asr.compression`.
"""

from __future__ import annotations

from pathlib import Path

from asr.checkpoint import read_float_checkpoint
from asr.config import TrainConfig, apply_override, from_dict, read_yaml
from asr.errors import UserError
from asr.train import TrainResult, train

def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# A fine-tuning run's schedule when the compression config does not set it (QAT is usually
# fine-tuned for ~10-20 % of the original steps at ~0.1x the peak learning rate).
FINE_TUNE_STEPS_FRACTION = 0.15
FINE_TUNE_LR_FRACTION = 0.1


def compress_config(checkpoint: str, method: str, path: str | None = None, overrides: list[str] = (),
                    exp_dir: str | None = None) -> TrainConfig:
    """The TrainConfig of ``asr compress``: the float checkpoint's own config (model, data, optim,
    train), then the sections of the YAML file ``path`` (its ``compression:`` section holds the
    method's fields; a ``model:`` section is refused: the model is the checkpoint's), then ``--set``
    overrides. Unless they set them: ``train.max_steps`` is 15 % of the float run's, ``optim.lr``
    0.1x its learning rate with no warm-up, ``train.average_last`` 1, ``train.max_minutes`` 0 and
    ``train.exp_dir`` ``<checkpoint folder>/compress-<method>``."""
    base = dict(read_float_checkpoint(checkpoint, "pass the float checkpoint it was made from")["config"])
    update: dict = read_yaml(path) if path else {}
    where = str(path) if path else "asr compress"
    if "model" in update:
        raise UserError(f"{where}: has a model section; asr compress takes the model from --checkpoint {checkpoint}, drop the section")
    for assignment in overrides:
        apply_override(update, assignment)
    section = update.get("compression") or {}
    for key in ("compression", "train", "optim"):
        if not isinstance(update.get(key) or {}, dict):
            raise UserError(f"{where}: '{key}' must be a mapping of fields, got {update[key]!r}")
    if section.get("method", method) != method:
        raise UserError(f"{where}: compression.method={section['method']!r} but --method {method}; make them agree")
    section.update(method=method, init_from=str(checkpoint))
    update["compression"] = section
    train, optim = update.get("train") or {}, update.get("optim") or {}
    update["train"], update["optim"] = train, optim
    if "max_steps" not in train:
        train["max_steps"] = max(1, round(FINE_TUNE_STEPS_FRACTION * base["train"]["max_steps"]))
    if "lr" not in optim:
        optim["lr"] = FINE_TUNE_LR_FRACTION * base["optim"]["lr"]
        optim.setdefault("warmup_steps", 0)
    if exp_dir:
        train["exp_dir"] = exp_dir
    elif "exp_dir" not in train:
        train["exp_dir"] = str(Path(checkpoint).parent / f"compress-{method}")
    train.setdefault("max_minutes", 0.0)
    # the converted model is the last checkpoint's: an average would mix phases of the method
    # (soft and hard GQ, snapped and free S8BQAT weights, different pruning masks)
    train.setdefault("average_last", 1)
    return from_dict(TrainConfig, _merge(base, update), where)


def compress(checkpoint: str, method: str, path: str | None = None, overrides: list[str] = (),
             exp_dir: str | None = None, resume: bool = False, force: bool = False) -> TrainResult:
    """Fine-tune ``checkpoint`` with ``method`` (see :func:`compress_config`); ``final.pt`` holds the
    converted model. ``resume`` and ``force`` as in :func:`asr.train.train`."""
    return train(compress_config(checkpoint, method, path, overrides, exp_dir), resume=resume, force=force)
