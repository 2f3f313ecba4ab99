"""Model shapes and lengths, chained streaming == full forward, config strictness."""

import pytest
import torch

from asr.chunking import OVERLAP_FEATURE_FRAMES, encoder_frames
from asr.config import TrainConfig, from_dict, load_config, to_dict
from asr.models.config import ModelConfig, PredictorConfig
from asr.errors import UserError
from asr.models.lstm import LSTMEncoderConfig
from asr.models.registry import PRESETS, build_model, list_models

ATOL = 1e-5


def _model(**encoder):
    torch.manual_seed(0)
    cfg = ModelConfig(encoder=LSTMEncoderConfig(**{"num_layers": 2, "hidden_dim": 48, "proj_dim": 24,
                                                    "subsampling_dim": 32, "subsampling_channels": 8, **encoder}),
                      predictor=PredictorConfig(embed_dim=16), joiner_dim=20, vocab_size=11)
    return build_model(cfg).eval()


def test_subsampling_length_arithmetic():
    t = torch.arange(0, 200)
    assert torch.equal(encoder_frames(t), torch.clamp(((t - 3) // 2 - 1) // 2, min=0))
    model = _model()
    for frames in [9, 10, 12, 13, 50, 101]:
        out, lens = model.encoder(torch.randn(1, frames, 80), torch.tensor([frames]))
        assert out.shape[1] == ((frames - 3) // 2 - 1) // 2 == int(lens[0])


@pytest.mark.parametrize("proj_dim", [0, 24])
@pytest.mark.parametrize("chunk_frames", [4, 16, 32])
def test_encoder_streaming_equals_full(proj_dim, chunk_frames):
    model = _model(proj_dim=proj_dim)
    x = torch.randn(3, 157, 80)
    x_lens = torch.tensor([157, 157, 157])
    full, full_lens = model.encoder(x, x_lens)
    assert full.shape == (3, int(full_lens[0]), model.encoder.output_dim)
    state = model.encoder.init_state(3)
    assert state[0].shape == (2, 3, proj_dim or 48) and state[1].shape == (2, 3, 48)
    outs, start, overlap = [], 0, OVERLAP_FEATURE_FRAMES
    while x.size(1) - start >= 9:
        chunk = x[:, start : start + chunk_frames + overlap]
        out, lens, state = model.encoder.streaming_forward(chunk, torch.full((3,), chunk.size(1)), state)
        assert out.size(1) == int(lens[0]) <= chunk_frames // 4
        outs.append(out)
        start += chunk_frames
    streamed = torch.cat(outs, dim=1)
    assert streamed.shape == full.shape
    diff = (streamed - full).abs().max().item()
    assert diff <= ATOL, f"streaming vs full max |diff| {diff:.3e}"


def test_padding_does_not_change_valid_outputs():
    model = _model()
    x = torch.randn(2, 120, 80)
    out, lens = model.encoder(x, torch.tensor([120, 77]))
    alone, alone_lens = model.encoder(x[1:, :77], torch.tensor([77]))
    assert int(lens[1]) == int(alone_lens[0])
    diff = (out[1, : lens[1]] - alone[0]).abs().max().item()
    assert diff <= ATOL, f"max |diff| {diff:.3e}"


def test_transducer_loss_and_predictor_shapes():
    model = _model()
    x, y = torch.randn(2, 60, 80), torch.randint(1, 11, (2, 5))
    loss = model(x, torch.tensor([60, 41]), y, torch.tensor([5, 3]))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    pred = model.predictor(torch.cat([torch.zeros(2, 1, dtype=torch.long), y], 1))
    assert pred.shape == (2, 6, 16)


def test_stateless_predictor_step_matches_forward_and_clamps_negative_ids():
    model = _model()
    p = model.predictor
    y = torch.tensor([[0, 4, 7, 2]])
    full = p(y)  # (1, 4, D)
    for u in range(4):
        ctx = torch.cat([torch.full((1, 1), -1), y], 1)[:, u : u + 2]  # -1 = no token yet
        step, _ = p.step(ctx)
        diff = (step[0] - full[0, u]).abs().max().item()
        assert diff <= ATOL, f"u={u} max |diff| {diff:.3e}"


def test_lstm_predictor_step_matches_forward():
    torch.manual_seed(0)
    cfg = ModelConfig(encoder=LSTMEncoderConfig(num_layers=1, hidden_dim=32, proj_dim=0, subsampling_dim=16, subsampling_channels=8),
                      predictor=PredictorConfig(type="lstm", embed_dim=16, hidden_dim=24, dropout=0.0), joiner_dim=20, vocab_size=11)
    model = build_model(cfg).eval()
    y = torch.tensor([[0, 4, 7, 2]])
    full = model.predictor(y)
    state = model.predictor.init_state(1)
    for u in range(4):
        out, state = model.predictor.step(y[:, u : u + 1], state)
        diff = (out[0] - full[0, u]).abs().max().item()
        assert diff <= ATOL, f"u={u} max |diff| {diff:.3e}"


def test_presets_build():
    assert list_models() == sorted(PRESETS)
    for name in list_models():
        model = build_model(PRESETS[name](vocab_size=50))
        assert sum(p.numel() for p in model.parameters()) > 0


def test_each_recipe_model_is_its_preset():
    """The model section of every recipe is a preset of ``asr models`` (so they cannot drift apart),
    and every encoder a recipe uses has one."""
    from pathlib import Path

    from asr.models.registry import PRESET_RECIPES

    repo = Path(__file__).resolve().parents[3]
    for name, recipe in PRESET_RECIPES.items():
        assert to_dict(load_config(str(repo / recipe)).model) == to_dict(PRESETS[name]()), f"{recipe} != preset {name}"
    used = {(p.parent.name, load_config(str(p)).model.encoder.type) for p in repo.glob("recipes/*/*.yaml")
            if not p.name.startswith("compress-")}
    covered = {(Path(r).parent.name, PRESETS[n]().encoder.type) for n, r in PRESET_RECIPES.items()}
    assert used == covered, f"recipes without a preset: {sorted(used - covered)}"


def test_recipe_configs_build(tmp_path):
    from pathlib import Path

    for path in sorted(Path("recipes").glob("*/*.yaml")):
        cfg = load_config(str(path))
        cfg.model.vocab_size = 100
        build_model(cfg.model)
        assert from_dict(TrainConfig, to_dict(cfg), "roundtrip") == cfg


def test_unknown_config_keys_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  encoder:\n    type: lstm\n    bogus: 1\n")
    with pytest.raises(UserError, match=r"bad.yaml.*unknown config key 'model.encoder.bogus'"):
        load_config(str(bad))
    with pytest.raises(UserError, match="unknown config key 'optim.nonsense'"):
        load_config(None, ["optim.nonsense=1"])
    with pytest.raises(UserError, match="unknown encoder type 'gru'"):
        load_config(None, ["model.encoder.type=gru"])
