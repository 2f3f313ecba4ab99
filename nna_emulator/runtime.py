"""Run a lowered model op by op on the emulated NNA (NumPy + the kernels of this package).

A :class:`Program` is what a lowering (``export.nna``) produces from a trained model: named integer
tensors, the quantization parameters of each (:class:`QTensor`), and a list of :class:`Op` whose
attributes hold integer weights, int32 biases, requantization multipliers and lookup tables. Running
it needs no torch and no float arithmetic except where an op says so (``quantize``: the host turns
float features into int8 codes before the NNA sees them).

Op kinds (inputs -> outputs; ``attrs``):
  quantize   x float -> q        (host side) q = quantize((x - mean) * inv_std): the input CMVN
  permute    x -> y              axes ``perm``
  reshape    x -> y              ``shape`` (0 copies that input axis, -1 infers one axis)
  linear     x (..., K) -> y     w (M, K) int8, bias int32, multiplier (scalar or per channel)
  conv1d     x (N, C, T) -> y    w, bias, multiplier, dilation, groups, pad_left, pad_right
  conv2d     x (N, C, H, W) -> y w, bias, multiplier, stride, padding
  lookup     x -> y              table (an activation: SiLU, tanh, sigmoid ...)
  clip       x -> y              lo, hi codes (ReLU)
  layer_norm x -> y              gamma int8, beta int32, multiplier, eps_int
  add        a, b -> y           (rescaled to the output's scale)
  embedding  ids int -> y        w (V, D) int8
  lstm       x (N, T, D), h0, c0 -> y (N, T, H), h, c
             w_ih, w_hh int8, bias int32, mult_ih, mult_hh (to Q3.12 int16 gates), cell_frac_bits,
             sigmoid / tanh / tanh_cell tables, h_multiplier: the input matmul for every frame, then
             per frame the recurrent matmul, a saturating int16 add and ``lstm_cell``.
Zero points and formats of an op's inputs and outputs come from ``Program.tensors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nna_emulator import ops as numba_ops
from nna_emulator import reference, spec

BACKENDS = {"numba": numba_ops, "reference": reference}
TABLE_KEYS = ("table", "sigmoid", "tanh", "tanh_cell")  # attributes that are activation lookup tables


@dataclass(frozen=True)
class QTensor:
    """Quantization parameters of one named tensor: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int = 0
    fmt: spec.QFormat = spec.INT8

    def dequantize(self, q) -> np.ndarray:
        return spec.dequantize(q, self.scale, self.zero_point)


@dataclass
class Op:
    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict = field(default_factory=dict)


@dataclass
class Program:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    ops: list[Op]
    tensors: dict[str, QTensor]

    def run(self, feeds: dict[str, np.ndarray], backend: str = "numba", profile: str = "fixed_point") -> dict[str, np.ndarray]:
        """Execute every op in order; returns the program's outputs (integer codes)."""
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}: use one of {', '.join(BACKENDS)}")
        missing = [k for k in self.inputs if k not in feeds]
        if missing:
            raise KeyError(f"program {self.name}: missing inputs {missing}")
        env = dict(feeds)
        for op in self.ops:
            values = _RUNNERS[op.kind](self, op, [env[k] for k in op.inputs], BACKENDS[backend], profile)
            env.update(zip(op.outputs, values))
        return {k: env[k] for k in self.outputs}

    def weight_bytes(self) -> int:
        """Bytes of the integer weights and biases the NNA stores for this program (tables apart)."""
        return sum(v.nbytes for op in self.ops for key, v in op.attrs.items()
                   if key not in TABLE_KEYS and isinstance(v, np.ndarray) and v.dtype.kind in "iu")

    def tables(self) -> dict[bytes, np.ndarray]:
        """The distinct lookup tables (an NNA holds each once, however many ops use it)."""
        return {t.tobytes(): t for op in self.ops for key, t in op.attrs.items() if key in TABLE_KEYS}

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.kind] = counts.get(op.kind, 0) + 1
        return counts


def _q(p: Program, name: str) -> QTensor:
    return p.tensors[name]


def _quantize(p, op, xs, k, profile):
    a, out = op.attrs, _q(p, op.outputs[0])
    x = (np.asarray(xs[0], dtype=np.float64) - a["mean"]) * a["inv_std"]
    rounding = "half_even" if profile == "onnxruntime" else "half_away"
    return [spec.quantize(x, out.scale, out.zero_point, out.fmt, rounding)]


def _linear(p, op, xs, k, profile):
    a, x_in, out = op.attrs, _q(p, op.inputs[0]), _q(p, op.outputs[0])
    x = xs[0]
    y = k.linear(x.reshape(-1, x.shape[-1]), x_in.zero_point, a["w"], a.get("bias"), a["multiplier"], out.zero_point,
                 profile, out.fmt)
    return [y.reshape(x.shape[:-1] + (y.shape[-1],))]


def _conv1d(p, op, xs, k, profile):
    a, x_in, out = op.attrs, _q(p, op.inputs[0]), _q(p, op.outputs[0])
    return [k.conv1d(xs[0], x_in.zero_point, a["w"], a.get("bias"), a["multiplier"], out.zero_point, a.get("dilation", 1),
                     a.get("groups", 1), a.get("pad_left", 0), a.get("pad_right", 0), profile, out.fmt)]


def _conv2d(p, op, xs, k, profile):
    a, x_in, out = op.attrs, _q(p, op.inputs[0]), _q(p, op.outputs[0])
    return [k.conv2d(xs[0], x_in.zero_point, a["w"], a.get("bias"), a["multiplier"], out.zero_point, a.get("stride", (1, 1)),
                     a.get("padding", (0, 0)), a.get("groups", 1), profile, out.fmt)]


def _lookup(p, op, xs, k, profile):
    return [k.lookup(xs[0], op.attrs["table"], _q(p, op.inputs[0]).fmt)]


def _clip(p, op, xs, k, profile):
    return [k.clip(xs[0], op.attrs["lo"], op.attrs["hi"])]


def _layer_norm(p, op, xs, k, profile):
    a, x_in, out = op.attrs, _q(p, op.inputs[0]), _q(p, op.outputs[0])
    return [k.layer_norm(xs[0], x_in.zero_point, a["gamma"], a["beta"], a["multiplier"], out.zero_point, a["eps_int"],
                         profile, out.fmt)]


def _add(p, op, xs, k, profile):
    qa, qb, out = _q(p, op.inputs[0]), _q(p, op.inputs[1]), _q(p, op.outputs[0])
    return [k.add(xs[0], qa.scale, qa.zero_point, xs[1], qb.scale, qb.zero_point, out.scale, out.zero_point, profile, out.fmt)]


def _embedding(p, op, xs, k, profile):
    return [k.embedding(xs[0], op.attrs["w"], _q(p, op.outputs[0]).zero_point)]


def _permute(p, op, xs, k, profile):
    return [np.ascontiguousarray(np.transpose(xs[0], op.attrs["perm"]))]


def _reshape(p, op, xs, k, profile):
    x = xs[0]
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(op.attrs["shape"])]
    return [x.reshape(shape)]


def _lstm(p, op, xs, k, profile):
    """One LSTM layer over T frames (see the module docstring); state h0 (N, H) int8, c0 (N, H) int16."""
    a = op.attrs
    x, h, c = xs
    x_in, h_q = _q(p, op.inputs[0]), _q(p, op.outputs[1])
    n, t, _ = x.shape
    gx = k.linear(x.reshape(n * t, -1), x_in.zero_point, a["w_ih"], a["bias"], a["mult_ih"], 0, profile, spec.INT16)
    gx = gx.reshape(n, t, -1).astype(np.int32)
    y = np.empty((n, t, h.shape[-1]), dtype=h_q.fmt.dtype)
    for s in range(t):
        gh = k.linear(h, h_q.zero_point, a["w_hh"], None, a["mult_hh"], 0, profile, spec.INT16)
        gates = np.clip(gx[:, s] + gh, spec.INT16.qmin, spec.INT16.qmax).astype(np.int16)  # saturating int16 add
        h, c = k.lstm_cell(gates, c, a["cell_frac_bits"], a["sigmoid"], a["tanh"], a["tanh_cell"], a["h_multiplier"],
                           h_q.zero_point, profile, h_q.fmt)
        y[:, s] = h
    return [y, h, c]


_RUNNERS = {
    "quantize": _quantize, "linear": _linear, "conv1d": _conv1d, "conv2d": _conv2d, "lookup": _lookup, "clip": _clip,
    "layer_norm": _layer_norm, "add": _add, "embedding": _embedding, "permute": _permute, "reshape": _reshape,
    "lstm": _lstm,
}
