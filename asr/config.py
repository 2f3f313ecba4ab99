"""Configs: one nested dataclass per component, defaults only here, strict YAML loading.

A training run is described by :class:`TrainConfig` (``model``, ``data``, ``optim``, ``train``
sections). ``load_config(path, overrides)`` reads YAML, applies ``--set a.b=value`` overrides and
rejects any key the dataclasses do not define, naming the file and the valid keys.

Polymorphic sections (``model.encoder``, ``model.predictor``) pick their dataclass from their
``type`` field through the registry in :mod:`asr.models.registry`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from asr.errors import UserError


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
    # log-uniformly from [1 / (1 + freq_warp), 1 + freq_warp] (0 = off); see asr.train.augment.
    freq_warp: float = 0.0
    # Volume perturbation: a gain g scales the power spectrum by g^2, i.e. adds 2 ln g to every
    # log-mel bin, so it is applied exactly on cached features.
    volume_perturb_db: float = 6.0

    def __post_init__(self):
        if self.max_duration_s <= 0:
            raise UserError(f"data.max_duration_s={self.max_duration_s}: must be > 0 seconds")


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to ``final_lr_ratio * lr``."""

    lr: float = 2e-3
    weight_decay: float = 1e-2
    betas: tuple = (0.9, 0.98)
    warmup_steps: int = 200
    final_lr_ratio: float = 0.05
    clip_grad_norm: float = 5.0

    def __post_init__(self):
        self.betas = tuple(self.betas)
        if self.lr <= 0:
            raise UserError(f"optim.lr={self.lr}: must be > 0")


@dataclass
class LoopConfig:
    """The training loop: length, logging, validation and checkpoint cadence."""

    exp_dir: str = "exp/run"
    max_steps: int = 2000
    max_minutes: float = 0.0  # > 0: also stop (validate, save) once this much training time has passed
    seed: int = 42
    num_threads: int = 0  # torch intra-op threads; 0 = leave torch's default
    log_every: int = 25
    valid_every: int = 500
    save_every: int = 500
    keep_last: int = 5  # step checkpoints kept on disk (for averaging)
    average_last: int = 1  # checkpoints averaged into final.pt (1 = the last one)
    progress: bool = True

    def __post_init__(self):
        if self.max_steps <= 0:
            raise UserError(f"train.max_steps={self.max_steps}: must be > 0")
        if self.average_last < 1 or self.average_last > self.keep_last:
            raise UserError(
                f"train.average_last={self.average_last}: must be in 1..train.keep_last={self.keep_last}"
            )


@dataclass
class PredictorConfig:
    """Prediction network: ``stateless`` (embedding + a conv over the last ``context_size``
    tokens) or ``lstm`` (embedding + LSTM)."""

    type: str = "stateless"
    embed_dim: int = 256
    context_size: int = 2  # stateless only
    # stateless only: "depthwise" (icefall's conv, one filter per embedding channel) or "full"
    # (a conv that also mixes channels: a small n-gram model over the context; same export contract)
    context_mixing: str = "depthwise"
    hidden_dim: int = 320  # lstm only
    num_layers: int = 1  # lstm only
    dropout: float = 0.1

    def __post_init__(self):
        if self.type not in ("stateless", "lstm"):
            raise UserError(f"model.predictor.type={self.type!r}: use 'stateless' or 'lstm'")
        if self.type == "stateless" and self.context_size < 1:
            raise UserError(f"model.predictor.context_size={self.context_size}: must be >= 1")
        if self.context_mixing not in ("depthwise", "full"):
            raise UserError(f"model.predictor.context_mixing={self.context_mixing!r}: use 'depthwise' or 'full'")


@dataclass
class LossConfig:
    """The transducer loss. ``full``: torchaudio's RNN-T loss on the whole N x T x (U+1) lattice.
    ``pruned`` (``asr.losses.pruned``, as icefall trains): a linear "simple" joiner's loss picks
    ``prune_range`` symbols per frame, the real joiner runs on those only, and the training loss is
    ``simple_scale * simple + pruned``, with the scales ramped over ``warmup_steps`` from
    (1.0, 0.1) as icefall does (the simple loss guides the ranges while the joiner is untrained).
    ``rnnt_type``: "regular" (Graves; several symbols may share a frame) or "modified" (at most one
    symbol per frame, the lattice our and sherpa-onnx's searches walk; utterances with more tokens
    than encoder frames are then left out of training, and the count is logged). The full loss runs
    on torchaudio's kernel when it can (regular, no delay penalty or FastEmit), else on
    ``asr.losses.pruned.rnnt_loss_lattice``."""

    type: str = "full"
    rnnt_type: str = "regular"
    prune_range: int = 5
    simple_scale: float = 0.5
    lm_scale: float = 0.25  # pruned only: k2's lm_only_scale of the smoothed simple loss
    am_scale: float = 0.0  # pruned only: k2's am_only_scale
    warmup_steps: int = 2000
    delay_penalty: float = 0.0  # k2's delay penalty (rewards earlier symbols)
    fastemit_lambda: float = 0.0  # FastEmit's scale on the symbol-arc gradients

    def __post_init__(self):
        if self.type not in ("full", "pruned"):
            raise UserError(f"model.loss.type={self.type!r}: use 'full' or 'pruned'")
        if self.rnnt_type not in ("regular", "modified"):
            raise UserError(f"model.loss.rnnt_type={self.rnnt_type!r}: use 'regular' or 'modified'")
        if self.prune_range < 2:
            raise UserError(f"model.loss.prune_range={self.prune_range}: must be >= 2")


@dataclass
class ModelConfig:
    """A transducer: encoder (chosen by ``encoder.type``), predictor, joiner."""

    encoder: Any = None  # an encoder config dataclass, see asr.models.registry.ENCODERS
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    joiner_dim: int = 320
    ctc_weight: float = 0.0  # > 0 adds a training-only CTC head on the encoder (see Transducer)
    loss: LossConfig = field(default_factory=LossConfig)
    vocab_size: int = 0  # 0 = take it from the tokenizer at training time
    num_mel_bins: int = 80

    def __post_init__(self):
        if self.encoder is None:
            from asr.models.registry import encoder_config

            self.encoder = encoder_config("lstm")


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    # None: train a float model. Otherwise the config of a compression method (chosen by its
    # ``method`` field, see asr.compression.METHODS) that fine-tunes ``init_from`` (``asr compress``).
    compression: Any = None


# ----------------------------------------------------------------------------------------------
# strict dict <-> dataclass


def _polymorphic(cls, name: str):
    """(choosing key, its default, registry lookup) for fields typed ``Any`` that hold a config
    chosen by one of their keys; None for other fields."""
    if cls is ModelConfig and name == "encoder":
        from asr.models.registry import encoder_config_class

        return "type", "lstm", encoder_config_class
    if cls is TrainConfig and name == "compression":
        from asr.compression import config_class

        return "method", None, config_class
    return None


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


def _coerce(value, hint, where: str, key: str):
    """Numbers as the field declares them: YAML 1.1 reads ``1e-3`` (no dot) as a string."""
    if hint in (int, float) and not isinstance(value, bool):
        try:
            number = hint(value)
        except (TypeError, ValueError):
            raise UserError(f"{where}: {key}={value!r}: expected {'an integer' if hint is int else 'a number'}") from None
        if hint is int and isinstance(value, float) and number != value:
            raise UserError(f"{where}: {key}={value!r}: expected an integer")
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


def _apply_override(data: dict, assignment: str) -> None:
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


def _read_yaml(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: config file not found; pass a YAML file such as recipes/synth/lstm.yaml")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config file must be a mapping of sections (model, data, optim, train, ...)")
    return data


def load_config(path: str | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML training config (or defaults if ``path`` is None) and apply ``key=value`` overrides."""
    data: dict = {}
    where = "config"
    if path is not None:
        where = str(path)
        data = _read_yaml(path)
    for assignment in overrides:
        where = f"{where} (with --set)" if "--set" not in where else where
        _apply_override(data, assignment)
    return from_dict(TrainConfig, data, where)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# A fine-tuning run's schedule when the compression config does not set it (the reference's
# "QAT fine-tunes for ~10-20 % of the original steps at ~0.1x the peak learning rate").
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
    from asr.checkpoint import read_checkpoint

    ckpt = read_checkpoint(checkpoint)
    base = dict(ckpt["config"])
    if base.get("compression"):
        raise UserError(f"{checkpoint}: is already compressed ({base['compression'].get('method')}); "
                        "pass the float checkpoint it was made from")
    update: dict = _read_yaml(path) if path else {}
    where = str(path) if path else "asr compress"
    if "model" in update:
        raise UserError(f"{where}: has a model section; asr compress takes the model from --from {checkpoint}, drop the section")
    for assignment in overrides:
        _apply_override(update, assignment)
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
