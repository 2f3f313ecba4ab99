"""Reference integer ops: slow, obviously correct NumPy int64 code, the oracle of the
Numba kernels in ``nna_emulator.ops``. Arithmetic (rounding, saturation, requantization) comes from
``nna_emulator.spec``, and so do the formats the ops share with their Numba twins (``LN_FRAC_BITS``,
``ADD_LEFT_SHIFT``, ``add_params`` ...).

Shape legend: N rows (batch x time), K input features, M output features.

Ops: ``linear`` (int8 GEMM + int32 bias + requantization); ``conv1d`` (dilated, grouped /
depthwise, explicit left/right padding, so causal is ``pad_left = dilation * (K - 1)``); ``conv2d``
(strided, padded, grouped); ``add`` and ``mul`` with rescale; ``clip`` (ReLU / ReLU6 / hard tanh);
lookup-table activations (``activation_table`` / ``lookup``: sigmoid, tanh, SiLU... over an int8 or
int16 input); ``lstm_cell`` (int16 gates and cell state); ``layer_norm`` and ``softmax`` in integer
arithmetic; ``embedding``; ``concat``. Each docstring states its arithmetic and, where it is not
exact, its error against float.

One module per op family, each op re-exported here (``reference.linear(...)``):
- ``matmul``: ``accumulate``, ``linear`` and the int32 accumulator check of every reduction.
- ``conv``: ``conv1d``, ``conv2d``.
- ``elementwise``: ``add``, ``mul``, ``clip``, ``concat``.
- ``activation``: ``activation_table``, ``lookup``, ``softmax_exp_table``, ``softmax``.
- ``lstm``: ``lstm_cell``.
- ``norm``: ``layer_norm``, ``layer_norm_eps`` and the rounded division shared with ``softmax``.
- ``gather``: ``embedding`` (a row gather).
"""

from __future__ import annotations

from nna_emulator.reference.activation import activation_table, lookup, softmax, softmax_exp_table
from nna_emulator.reference.conv import conv1d, conv2d
from nna_emulator.reference.elementwise import add, clip, concat, mul
from nna_emulator.reference.gather import embedding
from nna_emulator.reference.matmul import accumulate, linear
from nna_emulator.reference.lstm import lstm_cell
from nna_emulator.reference.norm import layer_norm, layer_norm_eps

__all__ = [
    "accumulate", "activation_table", "add", "clip", "concat", "conv1d", "conv2d", "embedding", "layer_norm",
    "layer_norm_eps", "linear", "lookup", "lstm_cell", "mul", "softmax", "softmax_exp_table",
]
