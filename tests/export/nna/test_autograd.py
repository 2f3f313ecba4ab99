"""The torch bridge: forward == the emulated integer layer exactly; backward == straight-through."""

import numpy as np
import pytest
import torch

from export.nna.autograd import nna_linear, qtensor_for
from nna_emulator import ops, spec
from nna_emulator.runtime import QTensor


@pytest.mark.parametrize("profile", spec.PROFILES)
def test_forward_is_the_emulated_integer_layer(profile):
    torch.manual_seed(0)
    x, w, b = torch.randn(3, 5, 16).clamp(-2.4, 2.4), torch.randn(8, 16) * 0.3, torch.randn(8) * 0.1  # x inside its range
    x_q, out_q = QTensor(0.02, -3), QTensor(0.05, 4)
    y = nna_linear(x, w, b, x_q, out_q, profile)
    s_w = spec.weight_scales(w.double().numpy())
    codes = ops.linear(spec.quantize(x.reshape(-1, 16).double().numpy(), 0.02, -3), -3,
                       spec.quantize(w.double().numpy(), s_w[:, None], 0, spec.INT8_WEIGHT),
                       spec.quantize_bias(b.double().numpy(), 0.02, s_w), 0.02 * s_w / 0.05, 4, profile)
    expected = torch.from_numpy(out_q.dequantize(codes)).float().reshape(3, 5, 8)
    assert torch.equal(y, expected)
    # and it is the float layer up to quantization error where nothing saturates
    inside = (expected > (-128 - 4) * 0.05) & (expected < (127 - 4) * 0.05)
    assert (y - torch.nn.functional.linear(x, w, b))[inside].abs().max() < 0.06  # measured 0.033


def test_backward_is_straight_through_with_saturation_masks():
    torch.manual_seed(1)
    x = (torch.randn(6, 16) * 2).requires_grad_()
    w = (torch.randn(8, 16) * 0.3).requires_grad_()
    b = (torch.randn(8) * 0.1).requires_grad_()
    x_q, out_q = QTensor(0.02, 0), QTensor(0.03, 0)  # both ranges too narrow: some inputs and outputs saturate
    r = torch.randn(6, 8)
    y = nna_linear(x, w, b, x_q, out_q)
    (y * r).sum().backward()
    # reference: the float layer on the fake-quantized operands, with the two clipping masks
    x_hat = torch.from_numpy(x_q.dequantize(spec.quantize(x.detach().double().numpy(), 0.02, 0))).float()
    s_w = spec.weight_scales(w.detach().double().numpy())
    w_hat = torch.from_numpy(spec.quantize(w.detach().double().numpy(), s_w[:, None], 0, spec.INT8_WEIGHT) * s_w[:, None]).float()
    x_in = (x.detach().abs() <= 127 * 0.02) & (x.detach() >= -128 * 0.02)
    codes = torch.round(y.detach() / 0.03)
    out_in = (codes > -128) & (codes < 127)
    assert 0 < int(x_in.sum()) < x_in.numel() and 0 < int(out_in.sum()) < out_in.numel(), "the test must exercise both masks"
    g = r * out_in
    torch.testing.assert_close(x.grad, (g @ w_hat) * x_in)
    torch.testing.assert_close(w.grad, g.T @ x_hat)
    torch.testing.assert_close(b.grad, g.sum(0))


def test_training_through_the_emulator_converges():
    torch.manual_seed(2)
    target = torch.nn.Linear(12, 4)
    x = torch.randn(256, 12)
    with torch.no_grad():
        y_true = target(x)
    w = torch.zeros(4, 12, requires_grad=True)
    b = torch.zeros(4, requires_grad=True)
    x_q, out_q = qtensor_for(x), qtensor_for(y_true * 1.2)
    opt = torch.optim.Adam([w, b], lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        loss = ((nna_linear(x, w, b, x_q, out_q) - y_true) ** 2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 0.01 * float((y_true**2).mean()), f"loss {loss.item():.4f}"
    assert np.isfinite(loss.item())
