"""The one registry: ``build_model(cfg)``, ``list_models()`` and the named presets.

Adding an encoder = its file in ``asr/models/`` (a config dataclass and a class that takes
``(num_mel_bins, cfg)`` and implements ``forward``, ``init_state`` and ``streaming_forward``), its
config in ``asr.models.config.ENCODER_CONFIGS`` and its class in :data:`ENCODERS` below.

Presets are plain functions returning a :class:`asr.models.config.ModelConfig`; the model sections of
the recipes (``recipes/<corpus>/<encoder>.yaml``) are exactly these (tests compare them).
"""

from __future__ import annotations

from asr.errors import UserError
from asr.models.ancat import AncatEncoder, AncatEncoderConfig
from asr.models.biasing import Biasing
from asr.models.config import ENCODER_CONFIGS, LossConfig, ModelConfig, PredictorConfig
from asr.models.conformer import ConformerEncoder, ConformerEncoderConfig
from asr.models.convrnnt import ConvRNNTEncoder, ConvRNNTEncoderConfig
from asr.models.lstm import LSTMEncoder, LSTMEncoderConfig
from asr.models.predictor import LSTMPredictor, StatelessPredictor
from asr.models.transducer import Joiner, Transducer
from asr.models.wakeword import DualAttention

# encoder config dataclass -> the encoder it builds
ENCODERS = {LSTMEncoderConfig: LSTMEncoder, ConformerEncoderConfig: ConformerEncoder, ConvRNNTEncoderConfig: ConvRNNTEncoder,
            AncatEncoderConfig: AncatEncoder}


def build_predictor(cfg: PredictorConfig, vocab_size: int):
    if cfg.type == "stateless":
        return StatelessPredictor(vocab_size, cfg.embed_dim, cfg.context_size, depthwise=cfg.context_mixing == "depthwise")
    return LSTMPredictor(vocab_size, cfg.embed_dim, cfg.hidden_dim, cfg.num_layers, cfg.dropout)


def build_model(cfg: ModelConfig) -> Transducer:
    if cfg.vocab_size < 2:
        raise UserError(f"model.vocab_size={cfg.vocab_size}: set it (or train a tokenizer first)")
    encoder = ENCODERS[type(cfg.encoder)](cfg.num_mel_bins, cfg.encoder)
    predictor = build_predictor(cfg.predictor, cfg.vocab_size)
    joiner = Joiner(encoder.output_dim, predictor.output_dim, cfg.joiner_dim, cfg.vocab_size)
    biasing = None if cfg.biasing is None else Biasing(cfg.biasing, encoder.output_dim, predictor.output_dim)
    wakeword = None if cfg.wakeword is None else DualAttention(cfg.wakeword, encoder.output_dim)
    return Transducer(encoder, predictor, joiner, ctc_weight=cfg.ctc_weight, loss=cfg.loss, biasing=biasing,
                      wakeword=wakeword)


# ---- presets: plain functions returning a ModelConfig ------------------------------------------


def lstm_tiny(vocab_size: int = 0) -> ModelConfig:
    """~0.3 M parameters: for tests."""
    return ModelConfig(
        encoder=LSTMEncoderConfig(num_layers=1, hidden_dim=96, proj_dim=0, subsampling_dim=64, subsampling_channels=16, dropout=0.0),
        predictor=PredictorConfig(embed_dim=64, dropout=0.0),
        joiner_dim=64,
        vocab_size=vocab_size,
    )


def _synth_predictor_and_loss() -> dict:
    """What the ~3 M-parameter synth recipes share: a 6-token channel-mixing stateless predictor, a CTC
    head and the pruned loss on the modified (one symbol per frame) lattice."""
    return dict(predictor=PredictorConfig(embed_dim=128, context_size=6, context_mixing="full"), joiner_dim=192,
                ctc_weight=0.5, loss=LossConfig(type="pruned", rnnt_type="modified", warmup_steps=300))


def lstm_small(vocab_size: int = 0) -> ModelConfig:
    """The demo model, 3.1 M parameters at 32 tokens (``recipes/synth/lstm.yaml``)."""
    return ModelConfig(encoder=LSTMEncoderConfig(num_layers=3, hidden_dim=320, proj_dim=0, subsampling_dim=320,
                                                 subsampling_channels=64, dropout=0.0),
                       vocab_size=vocab_size, **_synth_predictor_and_loss())


def conformer_small(vocab_size: int = 0) -> ModelConfig:
    """A streaming Conformer of the demo's size, 3.4 M parameters (``recipes/synth/conformer.yaml``)."""
    return ModelConfig(encoder=ConformerEncoderConfig(num_layers=6, d_model=144, num_heads=4, ffn_dim=576, conv_kernel=15,
                                                      chunk_encoder_frames=8, left_context_encoder_frames=32,
                                                      train_chunk_encoder_frames=(4, 8, 16, 0), subsampling_channels=64,
                                                      dropout=0.0, branch_init_scale=0.0),
                       vocab_size=vocab_size, **_synth_predictor_and_loss())


def convrnnt_small(vocab_size: int = 0) -> ModelConfig:
    """A ConvRNN-T of the demo's size, 2.7 M parameters (``recipes/synth/convrnnt.yaml``)."""
    return ModelConfig(encoder=ConvRNNTEncoderConfig(d_model=192, local_channels=(8, 8, 8, 8), local_kernel=5, global_blocks=6,
                                                     global_kernel=3, se_reduction=16, num_layers=2, hidden_dim=320,
                                                     proj_dim=0, subsampling_channels=64, dropout=0.0, branch_init_scale=0.0),
                       vocab_size=vocab_size, **_synth_predictor_and_loss())


def ancat_small(vocab_size: int = 0) -> ModelConfig:
    """The Conformer of ``conformer_small`` with ANCAT's look-ahead schedulers, 3.4 M parameters
    (``recipes/synth/ancat.yaml``)."""
    return ModelConfig(encoder=AncatEncoderConfig(num_layers=6, d_model=144, num_heads=4, ffn_dim=576, conv_kernel=15,
                                                  left_context_encoder_frames=32, subsampling_channels=64, dropout=0.0,
                                                  branch_init_scale=0.0, max_lookahead=2, scheduler_dim=32,
                                                  gumbel_temperature=1.0, gumbel_noise=0.0, latency_weight=0.01,
                                                  full_context_prob=0.25),
                       vocab_size=vocab_size, **_synth_predictor_and_loss())


def lstm_large(vocab_size: int = 0) -> ModelConfig:
    """An LSTMP transducer for LibriSpeech (``recipes/librispeech/lstm.yaml``)."""
    return ModelConfig(encoder=LSTMEncoderConfig(num_layers=4, hidden_dim=1024, proj_dim=384, subsampling_dim=384,
                                                 subsampling_channels=128, dropout=0.1),
                       predictor=PredictorConfig(embed_dim=384, context_size=2), joiner_dim=512, vocab_size=vocab_size)


def _librispeech_loss() -> LossConfig:
    return LossConfig(type="pruned", rnnt_type="modified", prune_range=5, warmup_steps=3000)


def conformer_large(vocab_size: int = 0) -> ModelConfig:
    """A 12-layer streaming Conformer for LibriSpeech (``recipes/librispeech/conformer.yaml``)."""
    return ModelConfig(encoder=ConformerEncoderConfig(num_layers=12, d_model=256, num_heads=4, ffn_dim=1024, conv_kernel=31,
                                                      chunk_encoder_frames=16, left_context_encoder_frames=64,
                                                      train_chunk_encoder_frames=(4, 8, 16, 32), subsampling_channels=128,
                                                      dropout=0.1),
                       predictor=PredictorConfig(embed_dim=512, context_size=2), joiner_dim=512, loss=_librispeech_loss(),
                       vocab_size=vocab_size)


def convrnnt_large(vocab_size: int = 0) -> ModelConfig:
    """A ConvRNN-T for LibriSpeech with the paper's local CNN (``recipes/librispeech/convrnnt.yaml``)."""
    return ModelConfig(encoder=ConvRNNTEncoderConfig(d_model=512, local_channels=(100, 100, 64, 64), local_kernel=5,
                                                     global_blocks=6, global_kernel=3, se_reduction=16, num_layers=5,
                                                     hidden_dim=1024, proj_dim=512, subsampling_channels=128, dropout=0.1),
                       predictor=PredictorConfig(embed_dim=512, context_size=2), joiner_dim=512, loss=_librispeech_loss(),
                       vocab_size=vocab_size)


PRESETS = {f.__name__: f for f in (lstm_tiny, lstm_small, conformer_small, convrnnt_small, ancat_small, lstm_large,
                                     conformer_large, convrnnt_large)}
# the recipe whose model section each preset is (lstm_tiny has none: it is for tests)
PRESET_RECIPES = {"lstm_small": "recipes/synth/lstm.yaml", "conformer_small": "recipes/synth/conformer.yaml",
                  "convrnnt_small": "recipes/synth/convrnnt.yaml", "ancat_small": "recipes/synth/ancat.yaml",
                  "lstm_large": "recipes/librispeech/lstm.yaml",
                  "conformer_large": "recipes/librispeech/conformer.yaml",
                  "convrnnt_large": "recipes/librispeech/convrnnt.yaml"}


def list_models() -> list[str]:
    return sorted(PRESETS)


def presets_table(vocab_size: int = 500) -> str:
    """What ``asr models`` prints: each preset's encoder, size and recipe, and the encoder types."""
    lines = [f"| preset | encoder | parameters (vocabulary {vocab_size}) | recipe |", "|---|---|---|---|"]
    for name in list_models():
        cfg = PRESETS[name](vocab_size=vocab_size)
        params = sum(p.numel() for p in build_model(cfg).parameters())
        lines.append(f"| {name} | {cfg.encoder.type} | {params / 1e6:.2f} M | {PRESET_RECIPES.get(name, '(tests)')} |")
    return "\n".join(lines + ["encoder types: " + ", ".join(sorted(ENCODER_CONFIGS))])
