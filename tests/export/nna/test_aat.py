"""Accelerator-aware training (``export.nna.aat``): while training, the transducer's encoder, predictor
and joiner outputs are exactly the emulated NNA programs' (lowered from the current weights), with
the float model's gradients; in eval mode and after convert the model is the float one."""

from __future__ import annotations

import copy

import pytest
import torch

from asr.compression import handler, quantize_
from asr.compression.aat import AATConfig
from asr.errors import UserError
import export.nna.aat  # noqa: F401  (registers the AAT handler)
from export import nna
from tests.export.nna.test_nna import _batches, _model


def test_training_forward_is_the_emulated_nna_with_float_gradients():
    model = _model()
    float_model = copy.deepcopy(model)
    method = handler(AATConfig(recalibrate_every=0))
    method._calib = _batches()
    method.prepare(model)
    method.step_begin(model, 0, 10)
    emulated = nna.NNATransducer.from_model(float_model, nna.calibrate(float_model, _batches()))
    x, x_lens = torch.randn(2, 77, 80) * 1.5, torch.tensor([77, 77])
    ids = torch.tensor([[0, 3, 5, 7], [0, 2, 2, 9]])
    model.train()
    enc = model.joiner.encoder_proj(model.encoder(x, x_lens)[0])
    pred = model.joiner.predictor_proj(model.predictor(ids))
    logits = model.joiner(enc.unsqueeze(2), pred.unsqueeze(1))  # (N, T', U+1, V)

    enc_codes, _ = emulated.encode(x, x_lens)
    q = emulated.programs[0].tensors["enc_proj"]
    assert torch.equal(enc, ((enc_codes.double() - q.zero_point) * q.scale).float())
    c = model.predictor.context_size
    ctx = torch.nn.functional.pad(ids, (c - 1, 0), value=-1).unfold(1, c, 1).reshape(-1, c)
    pred_codes, _ = emulated.predict(ctx)
    p = emulated.programs[1].tensors["pred_proj"]
    assert torch.equal(pred, ((pred_codes.double() - p.zero_point) * p.scale).float().reshape(pred.shape))
    e_b, p_b = torch.broadcast_tensors(enc_codes.unsqueeze(2), pred_codes.reshape(2, 4, -1).unsqueeze(1))
    want = emulated.join(e_b.reshape(-1, e_b.shape[-1]), p_b.reshape(-1, p_b.shape[-1])).reshape(logits.shape)
    assert torch.equal(logits, want)

    # gradients: the float graph's at the activations that reach it. The encoder's and predictor's
    # parameters get the float model's gradients for the same upstream gradient ...
    r_enc, r_pred = torch.randn_like(enc), torch.randn_like(pred)
    ((enc * r_enc).sum() + (pred * r_pred).sum()).backward()
    float_model.train()
    f_enc = float_model.joiner.encoder_proj(float_model.encoder(x, x_lens)[0])
    f_pred = float_model.joiner.predictor_proj(float_model.predictor(ids))
    ((f_enc * r_enc).sum() + (f_pred * r_pred).sum()).backward()
    assert (f_enc - enc).abs().max() > 0  # the values differ (quantization)
    for (n, a), (_, b) in zip(model.named_parameters(), float_model.named_parameters()):
        if b.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, msg=n)
    # ... and the joiner's are the float joiner's at the emulated encoder and predictor outputs
    model.zero_grad()
    float_model.zero_grad()
    r = torch.randn_like(logits)
    (model.joiner(enc.detach().unsqueeze(2), pred.detach().unsqueeze(1)) * r).sum().backward()
    (float_model.joiner(enc.detach().unsqueeze(2), pred.detach().unsqueeze(1)) * r).sum().backward()
    for (n, a), (_, b) in zip(model.joiner.named_parameters(), float_model.joiner.named_parameters()):
        if b.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, msg=n)
    model.eval()  # eval: the float model
    with torch.no_grad():
        assert torch.equal(model.joiner.encoder_proj(model.encoder(x, x_lens)[0]),
                           float_model.eval().joiner.encoder_proj(float_model.encoder(x, x_lens)[0]))
    method.convert(model)
    model.train()
    with torch.no_grad():
        assert torch.equal(model.joiner.encoder_proj(model.encoder(x, x_lens)[0]),
                           float_model.joiner.encoder_proj(float_model.encoder(x, x_lens)[0]))


def test_the_transducer_loss_trains_through_the_emulator():
    model = _model()
    method = handler(AATConfig(recalibrate_every=2))
    method._calib = _batches()
    method.prepare(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, x_lens = torch.randn(2, 60, 80), torch.tensor([60, 47])
    y, y_lens = torch.randint(1, 12, (2, 4)), torch.tensor([4, 3])
    model.train()
    losses = []
    for step in range(3):
        method.step_begin(model, step, 3)
        loss = model(x, x_lens, y, y_lens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))


def test_refusals():
    from asr.models.config import ModelConfig
    from asr.models.conformer import ConformerEncoderConfig
    from asr.models.registry import build_model

    conformer = build_model(ModelConfig(encoder=ConformerEncoderConfig(num_layers=1, d_model=32, num_heads=2, ffn_dim=32),
                                        vocab_size=10))
    with pytest.raises(UserError, match="LSTM transducers only"):
        quantize_(conformer, AATConfig())
    with pytest.raises(UserError, match="exclude"):
        quantize_(_model(), AATConfig(exclude=["joiner.*"]))
    with pytest.raises(UserError, match="num_calib"):
        AATConfig(num_calib=0)


def test_quantize_api_prepare_and_convert_share_the_hooks():
    model = _model()
    cfg = AATConfig()
    quantize_(model, cfg)
    assert model.joiner._forward_hooks and model.encoder._forward_pre_hooks
    quantize_(model, cfg, step="convert")
    assert not model.joiner._forward_hooks and not model.encoder._forward_pre_hooks
