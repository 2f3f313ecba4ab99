"""int8 QAT (``asr.compression.qat``): its torch fake-quant is the NNA's arithmetic exactly. The
quantizer, the requantization (both profiles, every shift regime, ties and saturation) and the
whole int8 linear layer equal ``nna_emulator``'s reference and Numba kernels bit for bit; the
straight-through gradient is zero exactly where values saturate; prepare/convert on a model leave
weights whose NNA codes are the ones QAT trained with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asr.compression import handler, quantize_
from asr.compression.qat import (Int8QATConfig, QATLinear, QParams, fake_quantize, fake_quantize_weight, int8_linear,
                                 quantize, requantize, weight_scales)
from asr.errors import UserError
from nna_emulator import ops, reference, spec


def test_quantize_is_the_spec():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 3, 5000), np.arange(-300, 300) * 0.05, [1e9, -1e9]])  # ties at .5 steps, saturation
    for scale, zp in [(0.1, 10), (0.02, -128), (0.37, 0)]:
        want = spec.quantize(x, scale, zp, spec.INT8)
        got = quantize(torch.from_numpy(x), scale, zp).numpy()
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(fake_quantize(torch.from_numpy(x), scale, zp).numpy(), spec.dequantize(want, scale, zp))
    w = rng.normal(0, 0.1, (24, 17))
    np.testing.assert_array_equal(weight_scales(torch.from_numpy(w)).numpy(), spec.weight_scales(w, axis=0))
    s = spec.weight_scales(w, axis=0)[:, None]
    np.testing.assert_array_equal(fake_quantize_weight(torch.from_numpy(w)).numpy(), spec.quantize(w, s, 0, spec.INT8_WEIGHT) * s)


@pytest.mark.parametrize("profile", spec.PROFILES)
def test_requantize_is_the_spec(profile):
    rng = np.random.default_rng(1)
    acc = np.concatenate([rng.integers(-2**31, 2**31 - 1, 3000), rng.integers(-5000, 5000, 3000), [0, 5, -5, 2**31 - 1, -2**31, 7]])
    acc = acc.reshape(-1, 6)
    # per channel: shifts left (> 1), none, right, far right; a tie-maker (0.5) and a tiny one
    mult = np.array([3.7, 0.5, 0.3, 1.2e-4, 2.0**-20, 0.999999])
    for zp in (0, -3, 100):
        want = spec.requantize(acc, mult, zp, spec.INT8, profile)
        got = requantize(torch.from_numpy(acc), torch.from_numpy(mult), zp, spec.INT8, profile).numpy()
        np.testing.assert_array_equal(got, want)
    want16 = spec.requantize(acc, mult, 0, spec.INT16, profile)
    np.testing.assert_array_equal(requantize(torch.from_numpy(acc), torch.from_numpy(mult), 0, spec.INT16, profile).numpy(), want16)


@pytest.mark.parametrize("profile", spec.PROFILES)
def test_int8_linear_equals_the_emulator_exactly(profile):
    torch.manual_seed(0)
    x = torch.randn(300, 48) * 2
    x[0, :5] = 50.0  # beyond the input range: saturates
    w, b = torch.randn(20, 48) * 0.2, torch.randn(20) * 0.5
    x_q, out_q = QParams.covering(-4.0, 5.0), QParams.covering(-3.0, 2.5)
    y = int8_linear(x, w, b, x_q, out_q, profile)
    # the emulator, from the spec's own quantization of the same operands
    s_w = spec.weight_scales(w.double().numpy(), axis=0)
    w_codes = spec.quantize(w.double().numpy(), s_w[:, None], 0, spec.INT8_WEIGHT)
    b_codes = spec.quantize_bias(b.double().numpy(), x_q.scale, s_w)
    x_codes = spec.quantize(x.double().numpy(), x_q.scale, x_q.zero_point, spec.INT8)
    mult = x_q.scale * s_w / out_q.scale
    for kernel in (reference.linear, ops.linear):
        codes = kernel(x_codes, x_q.zero_point, w_codes, b_codes, mult, out_q.zero_point, profile, spec.INT8)
        np.testing.assert_array_equal(y.double().numpy(), spec.dequantize(codes, out_q.scale, out_q.zero_point).astype(np.float32))
    codes = np.rint(y.double().numpy() / out_q.scale) + out_q.zero_point
    assert (codes == spec.INT8.qmax).any() and (codes == spec.INT8.qmin).any()  # both saturations exercised


def test_straight_through_gradient_masks_saturation():
    torch.manual_seed(1)
    x = (torch.randn(64, 16) * 3).requires_grad_()
    w = (torch.randn(8, 16) * 0.3).requires_grad_()
    x_q, out_q = QParams.covering(-2.0, 2.0), QParams.covering(-1.0, 1.0)
    y = int8_linear(x, w, None, x_q, out_q)
    y.sum().backward()
    codes = torch.round(y.detach().double() / out_q.scale) + out_q.zero_point
    out_inside = ((codes > -128) & (codes < 127)).double()
    x_inside = ((x.detach() >= (-128 - x_q.zero_point) * x_q.scale) & (x.detach() <= (127 - x_q.zero_point) * x_q.scale)).double()
    w_hat = fake_quantize_weight(w.detach()).double()
    torch.testing.assert_close(x.grad.double(), (out_inside @ w_hat) * x_inside, rtol=1e-6, atol=1e-6)
    assert (x.grad[x_inside == 0] == 0).all() and 0 < x_inside.mean() < 1 and 0 < out_inside.mean() < 1
    v = torch.tensor([-10.0, 0.0, 10.0], requires_grad=True)
    fake_quantize(v, 0.01, 0).sum().backward()
    assert v.grad.tolist() == [0.0, 1.0, 0.0]


def test_prepare_convert_keeps_the_trained_codes(tiny_checkpoint):
    from asr.checkpoint import load_model

    model = load_model(tiny_checkpoint.path)[0]
    cfg = Int8QATConfig()
    quantize_(model, cfg)
    linears = [n for n, m in model.named_modules() if isinstance(m, QATLinear)]
    assert "joiner.output" in linears and not any(n.startswith(("ctc_output", "simple_")) for n in linears)
    method = handler(cfg)
    model.train()
    x, x_lens = torch.randn(2, 50, 80), torch.tensor([50, 41])
    y, y_lens = torch.randint(1, 10, (2, 5)), torch.tensor([5, 3])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(2):
        with method.forward_context():
            loss = model(x, x_lens, y, y_lens)
        opt.zero_grad()
        loss.backward()
        opt.step()
    trained = {n: fake_quantize_weight(getattr(model.get_submodule(n), "weight")).detach().clone() for n in linears}
    lstm = model.encoder.stack.layers[0]
    lstm_trained = lstm.weight_ih_l0.detach().clone()  # the parametrized (fake-quantized) value
    quantize_(model, cfg, step="convert")
    assert not any(isinstance(m, QATLinear) for m in model.modules())
    assert all(not k.endswith(("observer.range", "observer.seen")) and "parametrizations" not in k for k in model.state_dict())
    for n in linears:
        w = model.get_submodule(n).weight.detach()
        assert torch.equal(w, trained[n]), n
        s = spec.weight_scales(w.double().numpy(), axis=0)[:, None]  # what the lowering computes from it
        np.testing.assert_allclose(spec.quantize(w.double().numpy(), s, 0, spec.INT8_WEIGHT) * s, w.double().numpy(), atol=1e-8)
    assert torch.equal(model.encoder.stack.layers[0].weight_ih_l0.detach(), lstm_trained)


def test_bad_configs(tiny_checkpoint):
    from asr.checkpoint import load_model

    with pytest.raises(UserError, match="momentum"):
        Int8QATConfig(momentum=1.0)
    with pytest.raises(UserError, match="profile"):
        Int8QATConfig(profile="float")
    with pytest.raises(UserError, match="not prepared for int8 QAT"):
        quantize_(load_model(tiny_checkpoint.path)[0], Int8QATConfig(), step="convert")
