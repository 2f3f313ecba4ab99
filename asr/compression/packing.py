"""The on-device storage of a converted model, written out: every codebook weight as its b-bit
indices packed into bytes plus its levels, every pruned weight as its non-zeros plus a bitmask, every
other deployable parameter and float buffer as float32. :func:`pack` returns the arrays (their total ``nbytes`` is
:func:`asr.compression.model_bytes`), :func:`save_packed` writes them to one ``.npz`` (atomically)
and :func:`unpack_into` restores the weights exactly.

Index layout: the flattened (row-major) weight's indices, ``bits`` per index, little-endian within
a byte stream (index i occupies bits [i * b, (i + 1) * b) of the stream; bit 0 is the LSB of byte 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from asr.compression.codebook import nearest_index
from asr.compression.common import codebook_bits, codebooks, deployable_buffers, deployable_parameters, masks
from asr.errors import UserError
from asr.fileio import atomic_write


def pack_bits(indices: np.ndarray, bits: int) -> np.ndarray:
    """Non-negative integers < 2^bits -> uint8 bytes, ``bits`` per value, LSB first."""
    stream = ((indices.astype(np.uint16)[:, None] >> np.arange(bits, dtype=np.uint16)) & 1).astype(np.uint8)
    return np.packbits(stream.reshape(-1), bitorder="little")


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    stream = np.unpackbits(packed, bitorder="little")[: count * bits].reshape(count, bits).astype(np.int64)
    return (stream << np.arange(bits)).sum(axis=1)


def pack(model: nn.Module) -> dict[str, np.ndarray]:
    """{array name: array} of the device storage (see the module docstring)."""
    out: dict[str, np.ndarray] = {}
    special = set()
    for qualified, module, name, book in codebooks(model):
        w = getattr(module, name).detach()
        bits = codebook_bits(book)
        idx = nearest_index(w.reshape(-1), book)
        if not torch.equal(book[idx], w.reshape(-1)):
            raise UserError(f"{qualified}: not every weight is on its codebook; convert the model first")
        out[f"{qualified}.indices{bits}"] = pack_bits(idx.numpy(), bits)
        out[f"{qualified}.codebook"] = book.detach().float().numpy()
        special.add(qualified)
    for qualified, module, name, mask in masks(model):
        w = getattr(module, name).detach()
        out[f"{qualified}.values"] = w[mask].float().numpy()
        out[f"{qualified}.bitmask"] = np.packbits(mask.reshape(-1).numpy(), bitorder="little")
        special.add(qualified)
    for name, p in deployable_parameters(model) + deployable_buffers(model):
        if name not in special:
            out[name] = p.detach().float().numpy()
    return out


def save_packed(model: nn.Module, path: str | Path) -> int:
    """Write :func:`pack`'s arrays to ``path`` (.npz, uncompressed); returns their total bytes."""
    arrays = pack(model)
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return sum(a.nbytes for a in arrays.values())


@torch.no_grad()
def unpack_into(model: nn.Module, arrays) -> None:
    """Set ``model``'s deployable weights from packed ``arrays`` (a dict or a loaded .npz); the
    model must have the codebook / mask buffers of the packed one (``asr.compression.attach_buffers``)."""
    params = dict(deployable_parameters(model) + deployable_buffers(model))
    for qualified, module, name, _ in list(codebooks(model)):
        w = getattr(module, name)
        key = next((k for k in arrays if k.startswith(qualified + ".indices")), None)
        if key is None:
            raise UserError(f"packed model has no indices for {qualified}")
        bits = int(key.rsplit("indices", 1)[1])
        book = torch.from_numpy(np.asarray(arrays[f"{qualified}.codebook"]))
        idx = torch.from_numpy(unpack_bits(np.asarray(arrays[key]), bits, w.numel()))
        w.copy_(book[idx].reshape(w.shape))
        params.pop(qualified, None)
    for qualified, module, name, mask in list(masks(model)):
        w = getattr(module, name)
        bitmask = torch.from_numpy(np.unpackbits(np.asarray(arrays[f"{qualified}.bitmask"]), bitorder="little")[: w.numel()].astype(bool))
        flat = torch.zeros(w.numel(), dtype=w.dtype)
        flat[bitmask] = torch.from_numpy(np.asarray(arrays[f"{qualified}.values"])).to(w.dtype)
        w.copy_(flat.reshape(w.shape))
        mask.copy_(bitmask.reshape(w.shape))
        params.pop(qualified, None)
    for name, p in params.items():
        p.copy_(torch.from_numpy(np.asarray(arrays[name])))
