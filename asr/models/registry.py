"""The one registry: encoder types, ``build_model(cfg)``, ``list_models()`` and named presets.

Adding an encoder = one entry in ``ENCODERS`` (its config dataclass and its class, which takes
``(num_mel_bins, cfg)`` and implements ``forward``, ``init_state`` and ``streaming_forward``).
"""

from __future__ import annotations

from asr.config import ModelConfig, PredictorConfig
from asr.errors import UserError
from asr.models.conformer import ConformerEncoder, ConformerEncoderConfig
from asr.models.convrnnt import ConvRNNTEncoder, ConvRNNTEncoderConfig
from asr.models.lstm import LSTMEncoder, LSTMEncoderConfig
from asr.models.predictor import LSTMPredictor, StatelessPredictor
from asr.models.transducer import Joiner, Transducer

ENCODERS = {
    "lstm": (LSTMEncoderConfig, LSTMEncoder),
    "conformer": (ConformerEncoderConfig, ConformerEncoder),
    "convrnnt": (ConvRNNTEncoderConfig, ConvRNNTEncoder),
}


def encoder_config_class(name: str, where: str = "model.encoder.type"):
    if name not in ENCODERS:
        raise UserError(f"{where}: unknown encoder type {name!r}; choose one of {', '.join(sorted(ENCODERS))}")
    return ENCODERS[name][0]


def encoder_config(name: str, **kwargs):
    return encoder_config_class(name)(**kwargs)


def build_predictor(cfg: PredictorConfig, vocab_size: int):
    if cfg.type == "stateless":
        return StatelessPredictor(vocab_size, cfg.embed_dim, cfg.context_size, depthwise=cfg.context_mixing == "depthwise")
    return LSTMPredictor(vocab_size, cfg.embed_dim, cfg.hidden_dim, cfg.num_layers, cfg.dropout)


def build_model(cfg: ModelConfig) -> Transducer:
    if cfg.vocab_size < 2:
        raise UserError(f"model.vocab_size={cfg.vocab_size}: set it (or train a tokenizer first)")
    encoder = ENCODERS[cfg.encoder.type][1](cfg.num_mel_bins, cfg.encoder)
    predictor = build_predictor(cfg.predictor, cfg.vocab_size)
    joiner = Joiner(encoder.output_dim, predictor.output_dim, cfg.joiner_dim, cfg.vocab_size)
    return Transducer(encoder, predictor, joiner, ctc_weight=cfg.ctc_weight, loss=cfg.loss)


# ---- presets: plain functions returning a ModelConfig ------------------------------------------


def lstm_tiny(vocab_size: int = 0) -> ModelConfig:
    """~0.3 M parameters: for tests."""
    return ModelConfig(
        encoder=LSTMEncoderConfig(num_layers=1, hidden_dim=96, proj_dim=0, subsampling_dim=64, subsampling_channels=16, dropout=0.0),
        predictor=PredictorConfig(embed_dim=64, dropout=0.0),
        joiner_dim=64,
        vocab_size=vocab_size,
    )


def lstm_small(vocab_size: int = 0) -> ModelConfig:
    """The demo model (see recipes/synth/lstm.yaml for the trained recipe)."""
    return ModelConfig(
        encoder=LSTMEncoderConfig(num_layers=3, hidden_dim=512, proj_dim=256),
        predictor=PredictorConfig(embed_dim=256),
        joiner_dim=320,
        vocab_size=vocab_size,
    )


PRESETS = {"lstm_tiny": lstm_tiny, "lstm_small": lstm_small}


def list_models() -> list[str]:
    return sorted(PRESETS)
