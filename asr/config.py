"""Configs: one nested dataclass per component, defaults only there, strict YAML loading, versions.

A training run is described by :class:`TrainConfig` (``model``, ``data``, ``optim``, ``train``
sections, and ``compression`` for ``asr compress``). ``load_config(path, overrides)`` reads YAML,
applies ``--set a.b=value`` overrides and rejects any key the dataclasses do not define, naming the
file and the valid keys. The model's dataclasses are in :mod:`asr.models.config`, each compression
method's in its module of :mod:`asr.compression`.

Polymorphic sections (``model.encoder``, ``compression``) pick their dataclass from one of their
keys (``type``, ``method``): the field's metadata names the key and the lookup function.

Versions: a checkpoint stores its config as a dict with the ``config_version`` it was written at.
:func:`migrate_config` brings an older dict up to :data:`CONFIG_VERSION` step by step (renamed keys),
so checkpoints of earlier releases keep loading; a YAML file that still uses an old key gets an
error naming the new one.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from asr.bounds import COUNT, FRACTION, NON_NEGATIVE, POSITIVE, Range, check_bounds
from asr.compression import config_class as compression_config_class
from asr.errors import UserError, first_line
from asr.models.config import ModelConfig

@dataclass
class DataConfig:
    """Where the cached features and the tokenizer are, and how batches are made."""

    train_cuts: str = "data/fbank/cuts_train.jsonl.gz"
    dev_cuts: str = "data/fbank/cuts_dev.jsonl.gz"
    bpe_model: str = "data/lang_bpe/bpe.model"
    max_duration_s: float = 200.0  # seconds of audio per batch (lhotse dynamic bucketing)
    num_buckets: int = 10
    max_dev_cuts: int = 200  # dev utterances used for validation WER
    # SpecAugment on the log-mel features (torchaudio masks), per utterance.
    spec_augment: bool = True
    freq_masks: int = 2
    freq_mask_bins: int = 15
    time_masks: int = 2
    time_mask_ratio: float = 0.05  # max width of one time mask as a fraction of the utterance
    # Vocal-tract-length perturbation: each utterance's spectrum stretched in Hz by a factor drawn
    # log-uniformly from [1 / (1 + freq_warp), 1 + freq_warp] (0 = off); see asr.data.augment.
    freq_warp: float = 0.0
    # Volume perturbation: a gain g scales the power spectrum by g^2, i.e. adds 2 ln g to every
    # log-mel bin, so it is applied exactly on cached features.
    volume_perturb_db: float = 6.0
    # Bias lists of a model with model.biasing (asr.data.bias_lists.TrainingLists): per batch, its rare words
    # (outside the bias_top_k most frequent training words), each dropped with probability bias_drop, plus
    # bias_distractors other rare words of the training text.
    bias_top_k: int = 1000
    bias_distractors: int = 100
    bias_drop: float = 0.2

    BOUNDS = {"max_duration_s": Range(0, 86400, low_open=True), "num_buckets": Range(1, 1000), "max_dev_cuts": COUNT,
              "freq_masks": Range(0, 100), "freq_mask_bins": Range(0, 1000), "time_masks": Range(0, 100),
              "time_mask_ratio": FRACTION, "freq_warp": Range(0, 1, high_open=True), "volume_perturb_db": Range(0, 60),
              "bias_top_k": Range(1, 10_000_000), "bias_distractors": Range(0, 100_000), "bias_drop": FRACTION}

    def __post_init__(self):
        check_bounds(self, "data")


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to ``final_lr_ratio * lr``."""

    lr: float = 2e-3
    weight_decay: float = 1e-2
    betas: tuple = (0.9, 0.98)
    warmup_steps: int = 200
    final_lr_ratio: float = 0.05
    clip_grad_norm: float = 5.0  # the gradient's norm is scaled down to at most this

    BOUNDS = {"lr": Range(0, 10, low_open=True), "weight_decay": Range(0, 10), "betas": Range(0, 1, high_open=True),
              "warmup_steps": NON_NEGATIVE, "final_lr_ratio": FRACTION, "clip_grad_norm": POSITIVE}

    def __post_init__(self):
        check_bounds(self, "optim")
        self.betas = tuple(self.betas)
        if len(self.betas) != 2:
            raise UserError(f"optim.betas={list(self.betas)}: give two numbers in [0, 1), e.g. [0.9, 0.98]")


@dataclass
class LoopConfig:
    """The training loop: length, logging, validation and checkpoint cadence."""

    exp_dir: str = "exp/run"
    max_steps: int = 2000
    max_minutes: float = 0.0  # > 0: also stop (validate, save) once this much training time has passed
    seed: int = 42
    num_threads: int = 0  # torch intra-op threads; 0 = leave torch's default
    log_every: int = 25
    diagnostics_every: int = 0  # > 0: per-module update ratios, gradient norms, attention entropy (asr.diagnostics)
    valid_every: int = 500
    save_every: int = 500
    keep_last: int = 5  # step checkpoints kept on disk (for averaging)
    average_last: int = 1  # checkpoints averaged into final.pt (1 = the last one)
    progress: bool = True
    # A checkpoint whose weights start the model (its model section must be this run's, less model.biasing:
    # a biasing adapter is added to a trained transducer this way), and which weights train: "all", or
    # "biasing" (the adapter and phrase encoder only, the transducer frozen: Contextual Adapters' recipe).
    init_from: str = ""
    trainable: str = "all"

    BOUNDS = {"max_steps": COUNT, "max_minutes": NON_NEGATIVE, "seed": Range(0, 2**63 - 1), "num_threads": Range(0, 4096),
              "log_every": COUNT, "diagnostics_every": NON_NEGATIVE, "valid_every": COUNT, "save_every": COUNT,
              "keep_last": Range(1, 10000), "average_last": COUNT}

    def __post_init__(self):
        check_bounds(self, "train")
        if self.trainable not in ("all", "biasing"):
            raise UserError(f"train.trainable={self.trainable!r}: use 'all' or 'biasing'")
        if self.average_last < 1 or self.average_last > self.keep_last:
            raise UserError(
                f"train.average_last={self.average_last}: must be in 1..train.keep_last={self.keep_last}"
            )


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    # None: train a float model. Otherwise the config of a compression method (chosen by its
    # ``method`` field, see asr.compression.METHODS) that fine-tunes ``init_from`` (``asr compress``).
    compression: Any = field(default=None, metadata={"choose": "method", "default": None,
                                                     "lookup": compression_config_class})


# ----------------------------------------------------------------------------------------------
# strict dict <-> dataclass


def _polymorphic(cls, name: str):
    """(choosing key, its default, lookup) for a field whose dataclass is chosen by one of its keys
    (``metadata={"choose": ..., "default": ..., "lookup": ...}``); None for other fields."""
    meta = next(f.metadata for f in dataclasses.fields(cls) if f.name == name)
    return (meta["choose"], meta["default"], meta["lookup"]) if "choose" in meta else None


def _yaml_fields(cls) -> dict:
    """The fields a config file may set (``metadata={"yaml": False}`` marks Python-only hooks)."""
    return {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("yaml", True)}


def from_dict(cls, data: dict, where: str, prefix: str = ""):
    """Build dataclass ``cls`` from ``data``; unknown keys raise UserError naming ``where``."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: section '{prefix or '<top>'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = _yaml_fields(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            renamed = RENAMED_KEYS.get(f"{prefix}{key}")
            if renamed:
                raise UserError(f"{where}: config key '{prefix}{key}' was renamed to '{renamed}' "
                                f"(config_version {_renamed_in(prefix + key)}); rename it in the file")
            valid = ", ".join(sorted(fields))
            raise UserError(f"{where}: unknown config key '{prefix}{key}'; valid keys here: {valid}")
        hint = hints[key]
        chooser = _polymorphic(cls, key)
        if chooser is not None:
            choose, default, lookup = chooser
            if value is None and default is None:
                kwargs[key] = None
                continue
            if not isinstance(value, dict) or (default is None and choose not in value):
                raise UserError(f"{where}: '{prefix}{key}' must be a mapping with a '{choose}'")
            sub = lookup(value.get(choose, default), where=f"{where}: {prefix}{key}.{choose}")
            kwargs[key] = from_dict(sub, value, where, f"{prefix}{key}.")
        elif dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(hint, value, where, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, hint, where, f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise UserError(f"{where}: bad value in section '{prefix or '<top>'}': {e}") from None
    except UserError as e:  # the dataclass's own checks (asr.bounds.check_bounds and others): add the file
        raise UserError(f"{where}: {e}") from None


def _coerce(value, hint, where: str, key: str):
    """Values as the field declares them. Numbers: YAML 1.1 reads ``1e-3`` (no dot) as a string;
    floats must be finite. Booleans only from YAML's true/false: a quoted "false" or "no" (a string,
    which Python would take as true) and 0/1 are refused."""
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: {key}={value!r}: expected true or false (unquoted)")
        return value
    if hint in (int, float) and not isinstance(value, bool):
        try:
            number = hint(value)
        except (TypeError, ValueError, OverflowError):
            raise UserError(f"{where}: {key}={value!r}: expected {'an integer' if hint is int else 'a number'}") from None
        if hint is int and isinstance(value, float) and number != value:
            raise UserError(f"{where}: {key}={value!r}: expected an integer")
        if hint is float and not math.isfinite(number):
            raise UserError(f"{where}: {key}={value!r}: expected a finite number")
        return number
    return value


def to_dict(cfg) -> dict:
    """A plain dict (YAML/JSON and ``torch.load(weights_only=True)`` safe)."""
    out = {}
    for f in _yaml_fields(type(cfg)).values():
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def apply_override(data: dict, assignment: str) -> None:
    if "=" not in assignment:
        raise UserError(f"--set {assignment!r}: expected key=value, e.g. --set optim.lr=1e-3")
    key, raw = assignment.split("=", 1)
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        if node.get(part) is None:  # absent, or an empty YAML section
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise UserError(f"--set {assignment!r}: '{part}' is a value, not a section")
    node[parts[-1]] = yaml.safe_load(raw)


def read_yaml(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: config file not found; pass a YAML file such as recipes/synth/lstm.yaml")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({first_line(e)})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config file must be a mapping of sections (model, data, optim, train, ...)")
    return data


def load_config(path: str | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML training config (or defaults if ``path`` is None) and apply ``key=value`` overrides."""
    data: dict = {}
    where = "config"
    if path is not None:
        where = str(path)
        data = read_yaml(path)
    for assignment in overrides:
        where = f"{where} (with --set)" if "--set" not in where else where
        apply_override(data, assignment)
    return from_dict(TrainConfig, data, where)


# ----------------------------------------------------------------------------------------------
# versions and migrations

# The version of the config dict this code writes. Bump it with every change that would make an
# older checkpoint's config fail to load, and add the step from the previous version below.
CONFIG_VERSION = 2

# Keys renamed by each version (dotted paths), which the migrations and the YAML error messages use.
_RENAMES = {
    # 2: the Conformer's chunk arithmetic names its unit (encoder frames of 40 ms)
    2: {"model.encoder.chunk_size": "model.encoder.chunk_encoder_frames",
        "model.encoder.left_context": "model.encoder.left_context_encoder_frames",
        "model.encoder.train_chunk_sizes": "model.encoder.train_chunk_encoder_frames",
        "compression.chunk_frames": "compression.chunk_feature_frames"},
}
RENAMED_KEYS = {old: new for renames in _RENAMES.values() for old, new in renames.items()}


def _renamed_in(old_key: str) -> int:
    return next(version for version, renames in _RENAMES.items() if old_key in renames)


def migrate_config(data: dict, version: int, where: str) -> dict:
    """A config dict written at ``version`` brought up to :data:`CONFIG_VERSION` (a new dict).
    Version 1 is every checkpoint written before versions were recorded."""
    if version > CONFIG_VERSION:
        raise UserError(f"{where}: written with config_version {version} by a newer ondevice-asr than this one "
                        f"(config_version {CONFIG_VERSION}); upgrade ondevice-asr to read it")
    data = copy.deepcopy(data)
    for step in range(version + 1, CONFIG_VERSION + 1):
        for old, new in _RENAMES.get(step, {}).items():
            *path, leaf = old.split(".")
            node = data
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and leaf in node:
                node[new.rsplit(".", 1)[1]] = node.pop(leaf)
    return data
