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

from pathlib import Path


def drop_stale_kernels(ops_dir: Path, shared: list[Path]) -> list[Path]:
    """Numba's ``cache=True`` keys a cached kernel on its own file's timestamp, but the kernels inline
    the helpers of ``fixed_point.py`` and the constants of ``spec.py``: delete the cached kernels in
    ``ops_dir/__pycache__`` (where Numba caches a source tree it can write to, i.e. where sources are
    edited) older than any of ``shared``, so that they compile again. Returns what was deleted."""
    newest = max(p.stat().st_mtime for p in shared)
    stale = []
    for f in (ops_dir / "__pycache__").glob("*.nb[ic]"):
        try:
            if f.stat().st_mtime < newest:
                f.unlink()
                stale.append(f)
        except FileNotFoundError:  # another process importing the ops deleted it first
            pass
    return stale


drop_stale_kernels(Path(__file__).parent, [Path(__file__).with_name("fixed_point.py"),
                                           Path(__file__).parents[1] / "spec.py"])

from nna_emulator.ops.activation import lookup, softmax  # noqa: E402 (after the stale kernels are gone)
from nna_emulator.ops.conv import conv1d, conv2d
from nna_emulator.ops.elementwise import add, clip, concat, mul
from nna_emulator.ops.gather import embedding
from nna_emulator.ops.matmul import linear
from nna_emulator.ops.lstm import lstm_cell
from nna_emulator.ops.norm import layer_norm

__all__ = ["add", "clip", "concat", "conv1d", "conv2d", "embedding", "layer_norm", "linear", "lookup", "lstm_cell",
           "mul", "softmax"]
