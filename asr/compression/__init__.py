"""Compression for int8 NNAs behind a torchao-shaped API: a dataclass config per method, a handler
per config type, ``quantize_(model, config, step="prepare")`` / ``step="convert"`` (and
``prune_`` for the pruning methods), each config with per-layer bit widths or sparsity and a
``filter_fn(module, name)``. ``asr compress`` fine-tunes a float checkpoint with a method through
the one training loop (``asr.train``), which calls the handler's hooks (:mod:`.common`).

Methods (each module cites its paper): ``s8bqat`` (:mod:`.s8bqat`), ``gq`` (:mod:`.gq`), ``qat`` (int8
QAT on the NNA's arithmetic, :mod:`.qat`), ``aat`` (accelerator-aware training; its handler is
``export.nna.aat``), ``csp`` and ``magnitude`` (:mod:`.pruning`). The device storage of a converted
model: :mod:`.packing`.
"""

from __future__ import annotations

from asr.compression.aat import AATConfig
from asr.compression.common import (CompressionMethod, MethodConfig, attach_buffers, codebooks, fp32_bytes, handler, masks,
                                    model_bytes, register_handler)
from asr.compression.gq import GQConfig
from asr.compression.pruning import CSPConfig, MagnitudeConfig
from asr.compression.qat import Int8QATConfig
from asr.compression.s8bqat import S8BQATConfig
from asr.errors import UserError

# method name -> (config dataclass, the API verb that applies it); each method's handler registers
# itself for its config type (``register_handler``): S8BQAT, GQ, int8 QAT and the pruning methods
# in their modules here, AAT in ``export.nna.aat`` (it runs the emulator's kernels)
METHODS = {
    "s8bqat": (S8BQATConfig, "quantize"),
    "gq": (GQConfig, "quantize"),
    "qat": (Int8QATConfig, "quantize"),
    "aat": (AATConfig, "quantize"),
    "csp": (CSPConfig, "prune"),
    "magnitude": (MagnitudeConfig, "prune"),
}

__all__ = ["METHODS", "CompressionMethod", "MethodConfig", "attach_buffers", "codebooks", "config_class", "fp32_bytes",
           "handler", "masks", "model_bytes", "prune_", "quantize_", "register_handler"]


def config_class(name: str, where: str = "compression.method"):
    if name not in METHODS:
        raise UserError(f"{where}: unknown compression method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    return METHODS[name][0]


def _apply(model, config, step: str, verb: str):
    # prepare and convert of one model share one handler (AAT keeps its hooks on it)
    h = getattr(model, "_compression_handler", None)
    if step == "prepare" or h is None or h.config is not config:
        h = handler(config)
    if METHODS[config.method][1] != verb:
        other = "prune_" if verb == "quantize" else "quantize_"
        raise UserError(f"{verb}_ with a {type(config).__name__}: {config.method} is applied with {other}")
    if step == "prepare":
        h.prepare(model)
        object.__setattr__(model, "_compression_handler", h)
    elif step == "convert":
        h.convert(model)
        if getattr(model, "_compression_handler", None) is h:
            object.__delattr__(model, "_compression_handler")
    else:
        raise UserError(f"{verb}_ step={step!r}: use 'prepare' or 'convert'")
    return model


def quantize_(model, config: MethodConfig, step: str = "prepare"):
    """``prepare``: attach the method's codebooks / quantizers to the float ``model`` (in place);
    ``convert``: leave weights that the device stores as they are (see :mod:`.common`). Returns ``model``."""
    return _apply(model, config, step, "quantize")


def prune_(model, config: MethodConfig, step: str = "prepare"):
    """``prepare``: attach pruning masks (all ones: sparsity grows during fine-tuning);
    ``convert``: make the masks final. Returns ``model``."""
    return _apply(model, config, step, "prune")
