"""int8 quantization-aware training whose fake-quant is the NNA's integer arithmetic
(``nna_emulator.spec``), written in torch so that it trains at torch speed.

* :func:`fake_quantize` is ``spec.dequantize(spec.quantize(...))`` (float64 division, round half to
  even, saturation), bit for bit.
* :func:`int8_linear` is the NNA's int8 linear layer: input codes, int8 weights symmetric per output
  channel (``spec.weight_scales``), an int32 bias at ``s_x * s_w``, an exact integer accumulator and
  the requantization of ``profile`` (gemmlowp fixed point: ``spec.quantize_multipliers``, a
  saturating rounding doubling high multiply and a rounding right shift, in int64; or onnxruntime's
  float32 multiply), dequantized. Its output equals ``nna_emulator.ops.linear``'s exactly (tested),
  with a straight-through backward: the gradient of ``x_hat @ w_hat.T + b`` at the dequantized
  operands, zero where the input or the output saturated.

``Int8QATConfig`` (``quantize_(model, Int8QATConfig(), "prepare")``) puts them into a model the way
``export.nna.lower`` deploys it: every selected ``nn.Linear`` becomes a :class:`QATLinear` (input
and output ranges observed as running min/max with ``momentum``, the integer linear above); every
other selected weight (LSTM, convolution, embedding) gets a fake-quant parametrization at the NNA's
weight scales (per output channel; one per tensor for an embedding, as lowered). ``convert`` writes
the fake-quantized weights into the float model (lowering then finds exactly those codes) and
swaps the ``QATLinear`` modules back. Not simulated: the LSTM cell's int16 internals and lookup
tables, and the layer norms (accelerator-aware training, ``export.nna.aat``, runs those exactly).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from asr.compression.common import CompressionMethod, MethodConfig, check_names, int8_bytes, register_handler
from asr.bounds import Range, check_bounds
from asr.errors import UserError
from nna_emulator import spec

INT32_MIN, INT32_MAX = spec.INT32_MIN, spec.INT32_MAX


# ---- the spec's arithmetic in torch ----------------------------------------------------------------


def quantize(x: torch.Tensor, scale, zero_point, fmt: spec.QFormat = spec.INT8) -> torch.Tensor:
    """``spec.quantize`` (round half to even) in torch: integer codes held in float64."""
    q = torch.round(x.double() / torch.as_tensor(scale, dtype=torch.float64)) + torch.as_tensor(zero_point, dtype=torch.float64)
    return q.clamp(fmt.qmin, fmt.qmax)


def fake_quantize(x: torch.Tensor, scale, zero_point, fmt: spec.QFormat = spec.INT8) -> torch.Tensor:
    """dequantize(quantize(x)) with the straight-through estimator: gradient 1 inside the format's
    range, 0 where it saturates."""
    s, z = torch.as_tensor(scale, dtype=torch.float64), torch.as_tensor(zero_point, dtype=torch.float64)
    value = ((quantize(x.detach(), s, z, fmt) - z) * s).to(x.dtype)
    d = x.detach().double()
    inside = ((d >= (fmt.qmin - z) * s) & (d <= (fmt.qmax - z) * s)).to(x.dtype)
    return value + (x - x.detach()) * inside


def weight_scales(w: torch.Tensor, per_channel: bool = True) -> torch.Tensor:
    """``spec.weight_scales`` in torch (float64): max |w| per output channel (or over the tensor) / 127."""
    a = w.detach().double().abs()
    m = a.reshape(a.shape[0], -1).amax(dim=1) if per_channel else a.max().reshape(1)
    s = m / spec.INT8_WEIGHT.qmax
    return torch.where(s > 0, s, torch.ones_like(s))


def _channel_view(s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return s.reshape((-1,) + (1,) * (w.dim() - 1)) if s.numel() > 1 else s.reshape(())


def fake_quantize_weight(w: torch.Tensor, per_channel: bool = True) -> torch.Tensor:
    """The NNA's int8 weights of ``w``, dequantized (straight-through: the weight scale follows max
    |w|, so nothing saturates)."""
    s = _channel_view(weight_scales(w, per_channel), w)
    codes = quantize(w.detach(), s, 0, spec.INT8_WEIGHT)
    return (codes * s).to(w.dtype) + (w - w.detach())


def requantize(acc: torch.Tensor, multiplier: torch.Tensor, zero_point: int, fmt: spec.QFormat = spec.INT8,
               profile: str = "fixed_point") -> torch.Tensor:
    """``spec.requantize`` in torch: int64 accumulators (.., C) and per-channel real multipliers
    (C,) -> codes (int64)."""
    if profile == "fixed_point":
        m0, shift = spec.quantize_multipliers(multiplier.double().cpu().numpy(), acc.shape[-1])
        m0, shift = torch.from_numpy(m0), torch.from_numpy(shift)
        left, right = shift.clamp(min=0), (-shift).clamp(min=0)
        x = (acc * (1 << left)).clamp(INT32_MIN, INT32_MAX)
        ab = x * m0  # |x| < 2^31, m0 < 2^31: exact in int64
        num = ab + torch.where(ab >= 0, torch.tensor(1 << 30), torch.tensor(1 - (1 << 30)))
        high = torch.where(num >= 0, num >> 31, -((-num) >> 31))  # C++ division: toward zero
        high = torch.where((x == INT32_MIN) & (m0 == INT32_MIN), torch.tensor(INT32_MAX), high)
        mask = (1 << right) - 1
        out = (high >> right) + ((high & mask) > ((mask >> 1) + (high < 0).long())).long()
    elif profile == "onnxruntime":
        out = torch.round(acc.float() * multiplier.float()).long()
    else:
        raise UserError(f"profile={profile!r}: use one of {', '.join(spec.PROFILES)}")
    return (out + zero_point).clamp(fmt.qmin, fmt.qmax)


@dataclass(frozen=True)
class QParams:
    """An activation's quantization (``nna_emulator.runtime.QTensor`` without the numpy)."""

    scale: float
    zero_point: int
    fmt: spec.QFormat = spec.INT8

    @classmethod
    def covering(cls, lo: float, hi: float, fmt: spec.QFormat = spec.INT8) -> "QParams":
        return cls(*spec.choose_qparams(lo, hi, fmt), fmt)


class Int8LinearFunction(torch.autograd.Function):
    """See :func:`int8_linear`. ``integer_core`` is the integer part (codes in, codes out); the torch
    one here, or the emulator's kernel (``export.nna.autograd``), which must give the same integers."""

    @staticmethod
    def forward(ctx, x, weight, bias, x_q: QParams, out_q: QParams, profile: str, integer_core):
        s_w = weight_scales(weight)  # float64 (C,)
        w_codes = quantize(weight.detach(), s_w[:, None], 0, spec.INT8_WEIGHT)
        b_codes = None
        if bias is not None:  # spec.quantize_bias: int32 at s_w * s_x
            b_codes = quantize(bias.detach(), s_w * x_q.scale, 0, spec.QFormat(32))
        x2 = x.detach().reshape(-1, x.shape[-1])
        x_codes = quantize(x2, x_q.scale, x_q.zero_point, x_q.fmt)
        y_codes = integer_core(x_codes, x_q, w_codes, b_codes, x_q.scale * s_w / out_q.scale, out_q, profile)
        y = ((y_codes.double() - out_q.zero_point) * out_q.scale).to(x.dtype).reshape(x.shape[:-1] + (weight.shape[0],))
        x_hat = ((x_codes - x_q.zero_point) * x_q.scale).to(x.dtype).reshape(x.shape)
        x_inside = (x.detach() >= (x_q.fmt.qmin - x_q.zero_point) * x_q.scale) & (x.detach() <= (x_q.fmt.qmax - x_q.zero_point) * x_q.scale)
        out_inside = ((y_codes > out_q.fmt.qmin) & (y_codes < out_q.fmt.qmax)).reshape(y.shape)
        ctx.save_for_backward(x_hat, (w_codes * s_w[:, None]).to(weight.dtype), x_inside, out_inside)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x_hat, w_hat, x_inside, out_inside = ctx.saved_tensors
        g = grad_y * out_inside.to(grad_y.dtype)  # no gradient through output saturation
        g2 = g.reshape(-1, g.shape[-1])
        grad_x = (g @ w_hat) * x_inside.to(g.dtype)  # nor through input clipping
        grad_w = g2.T @ x_hat.reshape(-1, x_hat.shape[-1])
        grad_b = g2.sum(0) if ctx.has_bias else None
        return grad_x, grad_w, grad_b, None, None, None, None


def torch_integer_linear(x_codes, x_q: QParams, w_codes, b_codes, multiplier, out_q: QParams, profile: str):
    """The accumulator (exact: integers far below 2^53 in float64) and requantization, in torch."""
    acc = (x_codes - x_q.zero_point) @ w_codes.T
    if b_codes is not None:
        acc = acc + b_codes
    return requantize(acc.long(), multiplier, out_q.zero_point, out_q.fmt, profile)


def int8_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, x_q: QParams, out_q: QParams,
                profile: str = "fixed_point") -> torch.Tensor:
    """The NNA's int8 ``F.linear`` (see the module docstring)."""
    return Int8LinearFunction.apply(x, weight, bias, x_q, out_q, profile, torch_integer_linear)


# ---- the method ----------------------------------------------------------------------------------


class RangeObserver(nn.Module):
    """Running min/max of a tensor: the first batch sets it, then ``momentum`` averages (EMA)."""

    def __init__(self, momentum: float) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("range", torch.zeros(2))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        if x.numel() == 0:
            return
        new = torch.stack([x.min(), x.max()]).float()
        self.range.copy_(new if int(self.seen) == 0 else self.momentum * self.range + (1 - self.momentum) * new)
        self.seen += 1

    def qparams(self) -> QParams:
        return QParams.covering(float(self.range[0]), float(self.range[1]))


class QATLinear(nn.Linear):
    """An ``nn.Linear`` (same parameters, same state-dict keys) whose forward is the NNA's int8
    linear at observed input and output ranges."""

    def __init__(self, linear: nn.Linear, momentum: float, profile: str) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.input_observer, self.output_observer = RangeObserver(momentum), RangeObserver(momentum)
        self.profile = profile

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or int(self.input_observer.seen) == 0:
            self.input_observer.update(x)
            with torch.no_grad():
                self.output_observer.update(nn.functional.linear(x, self.weight, self.bias))
        return int8_linear(x, self.weight, self.bias, self.input_observer.qparams(), self.output_observer.qparams(),
                           self.profile)

    def to_linear(self) -> nn.Linear:
        out = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        out.weight, out.bias = self.weight, self.bias
        return out


class WeightFakeQuant(nn.Module):
    """Parametrization: the weight as the NNA stores it (int8, per channel or per tensor), dequantized."""

    def __init__(self, per_channel: bool) -> None:
        super().__init__()
        self.per_channel = per_channel

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quantize_weight(w, self.per_channel)


@dataclass
class Int8QATConfig(MethodConfig):
    momentum: float = 0.99  # of the activation range observers
    profile: str = "fixed_point"  # the NNA's requantization (nna_emulator.spec.PROFILES)

    BOUNDS = {"momentum": Range(0, 1, high_open=True)}

    def __post_init__(self):
        check_bounds(self, "compression")
        self.check_method("qat")
        if self.profile not in spec.PROFILES:
            raise UserError(f"qat profile={self.profile!r}: use one of {', '.join(spec.PROFILES)}")


def _parent(model: nn.Module, qualified_module: str):
    parent_name, _, child = qualified_module.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


@register_handler(Int8QATConfig)
class Int8QAT(CompressionMethod):
    config: Int8QATConfig

    def prepare(self, model: nn.Module) -> None:
        cfg = self.config
        for qualified, module, name in check_names(model, cfg, {}, "names"):
            if type(module) is nn.Linear and name == "weight":
                parent, child = _parent(model, qualified.rpartition(".")[0])
                setattr(parent, child, QATLinear(module, cfg.momentum, cfg.profile))
            else:
                parametrize.register_parametrization(module, name, WeightFakeQuant(not isinstance(module, nn.Embedding)))

    @torch.no_grad()
    def convert(self, model: nn.Module) -> None:
        swapped = [(q, m) for q, m in model.named_modules() if isinstance(m, QATLinear)]
        params = [(m, n) for m in model.modules() if parametrize.is_parametrized(m)
                  for n, plist in m.parametrizations.items() if any(isinstance(p, WeightFakeQuant) for p in plist)]
        if not swapped and not params:
            raise UserError("quantize_(step='convert'): the model was not prepared for int8 QAT; run step='prepare' first")
        for qualified, module in swapped:
            module.weight.copy_(fake_quantize_weight(module.weight))
            parent, child = _parent(model, qualified)
            setattr(parent, child, module.to_linear())
        for module, name in params:
            parametrize.remove_parametrizations(module, name, leave_parametrized=True)

    def forward_context(self):
        return parametrize.cached()

    def bytes(self, model: nn.Module) -> int:
        return int8_bytes(model)


