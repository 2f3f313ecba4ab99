"""Numba kernels, bit-exact twins of ``nna_emulator.reference`` (tested over random inputs and edge
cases). The arithmetic mirrors ``nna_emulator.spec`` step for step in int64.

Every reference op has its twin here with the same signature: ``linear``, ``conv1d``, ``conv2d``,
``add``, ``mul``, ``clip``, ``lookup``, ``lstm_cell``, ``layer_norm``, ``softmax``, ``embedding`` and
``concat``. Kernels are serial: the emulator runs next to a training process on small machines, where
Numba's OpenMP threads competing with torch's cost more than they gain (see ``asr.losses.pruned``).

The modules mirror the reference's, one per op family, each op re-exported here (``ops.linear(...)``):
``matmul`` (``linear``), ``conv``, ``elementwise`` (``add``, ``mul``, ``clip``, ``concat``), ``activation``
(``lookup``, ``softmax``), ``lstm``, ``norm`` (``layer_norm``) and ``gather`` (``embedding``); ``fixed_point``
holds the Numba helpers they share (SRDHM, RoundingDivideByPOT, the requantization of one
accumulator and its parameters, rounded division). The formats shared with the reference come from
``nna_emulator.spec``: nothing here imports the reference, which is the tests' oracle only.
"""

from __future__ import annotations

from nna_emulator.ops.activation import lookup, softmax
from nna_emulator.ops.conv import conv1d, conv2d
from nna_emulator.ops.elementwise import add, clip, concat, mul
from nna_emulator.ops.gather import embedding
from nna_emulator.ops.matmul import linear
from nna_emulator.ops.lstm import lstm_cell
from nna_emulator.ops.norm import layer_norm

__all__ = ["add", "clip", "concat", "conv1d", "conv2d", "embedding", "layer_norm", "linear", "lookup", "lstm_cell",
           "mul", "softmax"]
