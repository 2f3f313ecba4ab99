"""Compression for int8 NNAs behind a torchao-shaped API: a dataclass config per method, a handler
per config type, ``quantize_(model, config, step="prepare")`` / ``step="convert"`` (and
``prune_`` for the pruning methods), each config with per-layer bit widths or sparsity and a
``filter_fn(module, name)``. ``asr compress`` fine-tunes a float checkpoint with a method through
the one training loop (``asr.train``), which calls the handler's hooks (:mod:`.common`).

Methods (``shared/reference/seed-methods.md`` sections 1-4): ``s8bqat`` (:mod:`.s8bqat`), ``gq``
(:mod:`.gq`), ``qat`` (int8 QAT on the NNA's arithmetic, :mod:`.qat`), ``aat`` (accelerator-aware
training, ``export.aat``), ``csp`` and ``magnitude`` (:mod:`.pruning`). The device storage of a
converted model: :mod:`.packing`.
"""

from __future__ import annotations

from asr.compression.common import CompressionMethod, MethodConfig, attach_buffers, codebooks, fp32_bytes, masks, model_bytes
from asr.compression.gq import GQ, GQConfig
from asr.compression.aat import AATConfig
from asr.compression.qat import Int8QAT, Int8QATConfig
from asr.compression.pruning import CSP, CSPConfig, Magnitude, MagnitudeConfig
from asr.compression.s8bqat import S8BQAT, S8BQATConfig
from asr.errors import UserError

# method name -> (config dataclass, handler class); ``kind`` says which API verb applies
METHODS = {
    "s8bqat": (S8BQATConfig, S8BQAT, "quantize"),
    "gq": (GQConfig, GQ, "quantize"),
    "qat": (Int8QATConfig, Int8QAT, "quantize"),
    # its handler runs the emulator's kernels, so it lives in export/ and is imported when used
    "aat": (AATConfig, "export.aat:AAT", "quantize"),
    "csp": (CSPConfig, CSP, "prune"),
    "magnitude": (MagnitudeConfig, Magnitude, "prune"),
}

__all__ = ["METHODS", "CompressionMethod", "MethodConfig", "attach_buffers", "codebooks", "config_class", "fp32_bytes",
           "handler", "masks", "model_bytes", "prune_", "quantize_"]


def config_class(name: str, where: str = "compression.method"):
    if name not in METHODS:
        raise UserError(f"{where}: unknown compression method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    return METHODS[name][0]


def handler(config: MethodConfig) -> CompressionMethod:
    for cls, method, _ in METHODS.values():
        if type(config) is cls:
            if isinstance(method, str):
                import importlib

                module, _, name = method.partition(":")
                method = getattr(importlib.import_module(module), name)
            return method(config)
    raise UserError(f"{type(config).__name__}: not a compression config; use one of "
                    f"{', '.join(c.__name__ for c, _, _ in METHODS.values())}")


def _apply(model, config, step: str, verb: str):
    # prepare and convert of one model share one handler (AAT keeps its hooks on it)
    h = getattr(model, "_compression_handler", None)
    if step == "prepare" or h is None or h.config is not config:
        h = handler(config)
    if METHODS[config.method][2] != verb:
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
