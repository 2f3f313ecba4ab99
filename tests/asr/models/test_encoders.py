"""Conformer and ConvRNN-T encoders: chunk-by-chunk streaming == (masked) full forward, causality,
receptive field, padding invariance, and a training step through the registry."""

import pytest
import torch

from asr.chunking import RECEPTIVE_FIELD_FEATURE_FRAMES, Chunking
from asr.models.config import LossConfig, ModelConfig, PredictorConfig
from asr.models.conformer import ConformerEncoder, ConformerEncoderConfig
from asr.models.convrnnt import ConvRNNTEncoder, ConvRNNTEncoderConfig, GlobalBlock
from asr.models.registry import build_model

ATOL = 1e-5


def _conformer(**kw):
    torch.manual_seed(0)
    cfg = ConformerEncoderConfig(**{"num_layers": 2, "d_model": 32, "num_heads": 4, "ffn_dim": 64, "conv_kernel": 5,
                                    "left_context_encoder_frames": 6, "subsampling_channels": 8, "dropout": 0.0, **kw})
    enc = ConformerEncoder(80, cfg).eval()
    enc.normalize.set_stats(torch.randn(80), torch.rand(80) + 0.5)
    return enc


def _convrnnt(**kw):
    torch.manual_seed(0)
    cfg = ConvRNNTEncoderConfig(**{"d_model": 32, "local_channels": (4, 4, 3, 3), "global_blocks": 4, "se_reduction": 8,
                                   "num_layers": 2, "hidden_dim": 24, "proj_dim": 0, "subsampling_channels": 8,
                                   "dropout": 0.0, **kw})
    enc = ConvRNNTEncoder(80, cfg).eval()
    enc.normalize.set_stats(torch.randn(80), torch.rand(80) + 0.5)
    return enc


def _stream(enc, x, chunk):
    """Feed (N, T, F) in chunks of 4 * chunk + 5 frames advancing by 4 * chunk -> (N, T', D)."""
    n, t, _ = x.shape
    state, outs, start = enc.init_state(n), [], 0
    chunking = Chunking.from_encoder_frames(chunk)
    step, width = chunking.chunk_feature_frames, chunking.window_feature_frames
    while start + RECEPTIVE_FIELD_FEATURE_FRAMES <= t:
        piece = x[:, start : start + width]
        out, _, state = enc.streaming_forward(piece, torch.full((n,), piece.size(1)), state)
        outs.append(out)
        start += step
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("chunk", [1, 2, 4, 8])
@pytest.mark.parametrize("left_context", [0, 6, 40])
def test_conformer_streaming_equals_masked_full_forward(chunk, left_context):
    enc = _conformer(left_context_encoder_frames=left_context)
    x = torch.randn(2, 157, 80)
    full, lens = enc(x, torch.tensor([157, 157]), chunk_encoder_frames=chunk)
    streamed = _stream(enc, x, chunk)
    assert streamed.shape == full.shape == (2, int(lens[0]), 32)
    assert (streamed - full).abs().max().item() <= ATOL


def test_conformer_chunk_mask_matches_definition():
    enc = _conformer(left_context_encoder_frames=3)
    lens = torch.tensor([10, 7])
    mask = enc.chunk_mask(10, lens, chunk=4)
    for n in range(2):
        for i in range(10):
            for j in range(10):
                start = i // 4 * 4
                expected = start - 3 <= j < start + 4 and j < int(lens[n])
                assert bool(mask[n, i, j]) == expected


@pytest.mark.parametrize("make", [_conformer, _convrnnt])
def test_padding_does_not_change_valid_frames(make):
    enc = make()
    long, short = torch.randn(1, 120, 80), torch.randn(1, 83, 80)
    alone, alone_lens = enc(short, torch.tensor([83]))
    batch = torch.cat([long, torch.nn.functional.pad(short, (0, 0, 0, 37), value=3.0)])
    out, lens = enc(batch, torch.tensor([120, 83]))
    t = int(alone_lens[0])
    assert int(lens[1]) == t
    assert (out[1, :t] - alone[0]).abs().max().item() <= ATOL


def test_conformer_dynamic_chunks_in_training_and_latency():
    enc = _conformer(train_chunk_encoder_frames=(1, 16))
    enc.train()
    x = torch.randn(1, 157, 80)
    torch.manual_seed(1)
    outs = {tuple(enc(x, torch.tensor([157]))[0].flatten()[:4].tolist()) for _ in range(8)}
    assert len(outs) == 2, "training draws its chunk from train_chunk_encoder_frames"
    cfg = enc.cfg
    assert cfg.chunk_ms == cfg.chunk_encoder_frames * 40 and cfg.left_context_ms == cfg.left_context_encoder_frames * 40
    assert enc.algorithmic_latency_ms(16) == 16 * 40 + 50


def test_branch_init_scale_zero_starts_every_block_as_its_skip_path():
    """Conformer: each block starts as its output LayerNorm of the input; ConvRNN-T: each global block
    as the identity. Streaming still equals the full forward (the scale changes weights, not the graph)."""
    x = torch.randn(2, 9, 32)
    conformer = _conformer(branch_init_scale=0.0)
    for layer in conformer.layers:
        mask = torch.ones(2, 9, 9, dtype=torch.bool)
        empty, conv0 = x.new_zeros(2, 0, 32), x.new_zeros(2, 32, 4)
        y, *_ = layer(x, empty, empty, conv0, 0, mask, torch.ones(2, 9))
        assert torch.allclose(y, layer.out_norm(x), atol=1e-6)
    convrnnt = _convrnnt(branch_init_scale=0.0)
    for block in convrnnt.blocks:
        y, _, _ = block(x, x.new_zeros(2, 32, block.pad), x.new_zeros(2, 32), torch.zeros(2, dtype=torch.long))
        assert torch.equal(y, x)
    default = _conformer()
    assert default.layers[0].attn.out.weight.abs().sum() > 0  # 1.0 leaves PyTorch's initialisation
    features = torch.randn(1, 4 * 8 * 3 + 5, 80)
    for enc, chunk in ((conformer, 8), (convrnnt, 8)):
        full, _ = enc(features, torch.tensor([features.size(1)]), chunk)
        assert torch.allclose(_stream(enc, features, chunk), full, atol=ATOL)


@pytest.mark.parametrize("chunk", [1, 3, 8, 16])
def test_convrnnt_streaming_equals_full_forward(chunk):
    enc = _convrnnt()
    x = torch.randn(2, 205, 80)
    full, lens = enc(x, torch.tensor([205, 205]))
    streamed = _stream(enc, x, chunk)
    assert streamed.shape == full.shape == (2, int(lens[0]), 24)
    assert (streamed - full).abs().max().item() <= ATOL


def test_convrnnt_is_causal():
    enc = _convrnnt()
    x = torch.randn(1, 161, 80)
    out, _ = enc(x, torch.tensor([161]))
    y = x.clone()
    y[:, 100:] = torch.randn(1, 61, 80)  # encoder frame j sees input frames up to 4j + 8
    out2, _ = enc(y, torch.tensor([161]))
    keep = (100 - 9) // 4 + 1  # frames 0 .. 23 see only inputs < 100
    assert torch.equal(out[:, :keep], out2[:, :keep])
    assert not torch.equal(out[:, keep:], out2[:, keep:])


def test_convrnnt_global_receptive_field_is_253_frames():
    enc = ConvRNNTEncoder(80, ConvRNNTEncoderConfig())
    assert enc.receptive_field_frames() == 253  # 1 + 2 * (2 + 4 + ... + 64)
    torch.manual_seed(0)
    blocks = [GlobalBlock(8, 3, 2 ** (i + 1), se_reduction=0, dropout=0.0) for i in range(6)]
    x = torch.randn(1, 300, 8, requires_grad=True)
    y, se = x, torch.zeros(1, 8)
    for b in blocks:
        y, _, _ = b(y, torch.zeros(1, 8, b.pad), se, torch.zeros(1, dtype=torch.long))
    (grad,) = torch.autograd.grad(y[0, 280].sum(), x)
    touched = grad[0].abs().sum(1).nonzero().flatten()
    assert int(touched.min()) == 280 - 252 and int(touched.max()) == 280


@pytest.mark.parametrize("encoder", [
    ConformerEncoderConfig(num_layers=1, d_model=32, num_heads=2, ffn_dim=48, conv_kernel=3, subsampling_channels=8),
    ConvRNNTEncoderConfig(d_model=32, local_channels=(2, 2, 2, 2), global_blocks=2, se_reduction=8, num_layers=1,
                          hidden_dim=24, subsampling_channels=8),
])
@pytest.mark.parametrize("loss", ["full", "pruned"])
def test_training_step_through_the_registry(encoder, loss):
    torch.manual_seed(0)
    model = build_model(ModelConfig(encoder=encoder, predictor=PredictorConfig(embed_dim=16), joiner_dim=20,
                                    vocab_size=9, loss=LossConfig(type=loss, rnnt_type="modified")))
    x, x_lens = torch.randn(2, 120, 80), torch.tensor([120, 90])
    y, y_lens = torch.randint(1, 9, (2, 6)), torch.tensor([6, 4])
    loss_value = model(x, x_lens, y, y_lens, warmup=0.5)
    loss_value.backward()
    assert torch.isfinite(loss_value)
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("ctc_output"))
