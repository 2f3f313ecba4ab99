"""The model's configs: one dataclass per component, defaults only here.

A transducer is ``ModelConfig``: its ``encoder`` (a config dataclass chosen by its ``type`` field,
defined with its encoder in ``asr/models/<type>.py``), ``predictor``, joiner size and ``loss``. The
strict YAML loading of these dataclasses is :mod:`asr.config`'s; the field metadata ``choose`` /
``lookup`` below tells it how to pick the encoder's dataclass from ``type``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asr.bounds import DROPOUT, LAYERS, NON_NEGATIVE, WIDTH, Range, check_bounds
from asr.errors import UserError
from asr.models.ancat import AncatEncoderConfig
from asr.models.biasing import BiasingConfig, biasing_config_class
from asr.models.conformer import ConformerEncoderConfig
from asr.models.convrnnt import ConvRNNTEncoderConfig
from asr.models.lstm import LSTMEncoderConfig
from asr.models.wakeword import WakeWordConfig, wakeword_config_class

# encoder type (the ``type`` field of ``model.encoder``) -> its config dataclass; the encoder classes
# that build from them are in asr.models.registry
ENCODER_CONFIGS = {"lstm": LSTMEncoderConfig, "conformer": ConformerEncoderConfig, "convrnnt": ConvRNNTEncoderConfig,
                   "ancat": AncatEncoderConfig}


def encoder_config_class(name: str, where: str = "model.encoder.type"):
    if name not in ENCODER_CONFIGS:
        raise UserError(f"{where}: unknown encoder type {name!r}; choose one of {', '.join(sorted(ENCODER_CONFIGS))}")
    return ENCODER_CONFIGS[name]


def encoder_config(name: str, **kwargs):
    """The config of encoder type ``name`` with ``kwargs`` set, e.g. ``encoder_config("conformer", num_layers=2)``."""
    return encoder_config_class(name)(**kwargs)


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

    BOUNDS = {"embed_dim": WIDTH, "context_size": Range(1, 64), "hidden_dim": WIDTH, "num_layers": LAYERS, "dropout": DROPOUT}

    def __post_init__(self):
        check_bounds(self, "model.predictor")
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

    BOUNDS = {"prune_range": Range(2, 1000), "simple_scale": Range(0, 100), "lm_scale": Range(0, 100),
              "am_scale": Range(0, 100), "warmup_steps": NON_NEGATIVE, "delay_penalty": Range(0, 100),
              "fastemit_lambda": Range(0, 100)}

    def __post_init__(self):
        check_bounds(self, "model.loss")
        if self.type not in ("full", "pruned"):
            raise UserError(f"model.loss.type={self.type!r}: use 'full' or 'pruned'")
        if self.rnnt_type not in ("regular", "modified"):
            raise UserError(f"model.loss.rnnt_type={self.rnnt_type!r}: use 'regular' or 'modified'")


@dataclass
class ModelConfig:
    """A transducer: encoder (chosen by ``encoder.type``), predictor, joiner."""

    encoder: Any = field(default_factory=LSTMEncoderConfig,
                         metadata={"choose": "type", "default": "lstm", "lookup": encoder_config_class})
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    joiner_dim: int = 320
    ctc_weight: float = 0.0  # > 0 adds a training-only CTC head on the encoder (see Transducer)
    loss: LossConfig = field(default_factory=LossConfig)
    vocab_size: int = 0  # 0 = take it from the tokenizer at training time
    num_mel_bins: int = 80
    # contextual biasing (asr.models.biasing): None builds none; a mapping with a 'type' builds it
    biasing: BiasingConfig | None = field(default=None,
                                          metadata={"choose": "type", "default": None, "lookup": biasing_config_class})
    # the dual-attention wake-word transducer (asr.models.wakeword): None builds none; needs biasing
    wakeword: WakeWordConfig | None = field(default=None,
                                            metadata={"choose": "type", "default": None, "lookup": wakeword_config_class})

    BOUNDS = {"joiner_dim": WIDTH, "ctc_weight": Range(0, 1), "vocab_size": Range(0, 1_000_000), "num_mel_bins": Range(1, 1024)}

    def __post_init__(self):
        check_bounds(self, "model")
        if self.wakeword is not None and self.biasing is None:
            raise UserError("model.wakeword needs model.biasing (its full attention branch is the biasing adapter); "
                            "add a model.biasing section")
