"""What every compression method shares: the base of their configs, the hooks the training loop
calls, which weights a config selects, the buffers a compressed model carries in its state dict,
and the size accounting.

A compressed model is a plain model whose compressed weights carry buffers beside them:

* ``<weight>_codebook`` (K,) ascending levels: the weight holds only those values (S8BQAT, GQ), so
  the device stores ``ceil(log2 K)``-bit indices plus the codebook;
* ``<weight>_mask`` (bool, the weight's shape): the weight is exactly 0 where the mask is False
  (CSP, magnitude pruning), so the device stores the non-zeros plus a one-bit-per-weight bitmask.

Those buffers are in ``state_dict()``, so a converted checkpoint loads with :func:`attach_buffers`
and decodes, exports and emulates like any other.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from asr.bounds import Range
from asr.errors import UserError

BITS = Range(1, 8)  # weight bit widths

CODEBOOK_SUFFIX = "_codebook"
MASK_SUFFIX = "_mask"
# heads that only shape training (CTC, the pruned loss's simple joiner): never deployed, never counted
TRAINING_ONLY = ("ctc_output", "simple_am", "simple_lm")


def default_filter(module: nn.Module, name: str) -> bool:
    """Matrices and kernels (2-D and up) of Linear, Conv, LSTM and Embedding layers; biases and
    normalisation parameters stay float."""
    return isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.LSTM, nn.Embedding)) and name.startswith("weight")


def no_embedding_filter(module: nn.Module, name: str) -> bool:
    """:func:`default_filter` without embedding tables (the pruning methods leave them dense)."""
    return default_filter(module, name) and not isinstance(module, nn.Embedding)


@dataclass
class MethodConfig:
    """Fields every method's config has. ``method`` names it in a YAML ``compression:`` section;
    ``init_from`` is the float checkpoint fine-tuning starts from (``asr compress --from`` sets it);
    ``exclude``: fnmatch patterns of weight names (e.g. ``"joiner.*"``) kept float; ``filter_fn``
    (Python only, torchao's hook): ``filter_fn(module, parameter_name)`` picks the weights."""

    method: str = ""
    init_from: str = ""
    exclude: list = field(default_factory=list)
    filter_fn: Callable[[nn.Module, str], bool] = field(default=default_filter, metadata={"yaml": False})

    def check_method(self, name: str) -> None:
        if self.method not in ("", name):
            raise UserError(f"compression.method={self.method!r} in a {type(self).__name__}; use {name!r}")
        self.method = name
        if not isinstance(self.exclude, list) or not all(isinstance(p, str) for p in self.exclude):
            raise UserError(f"{name} exclude={self.exclude!r}: give a list of name patterns, e.g. [\"joiner.*\"]")

    def check_per_layer(self, field_name: str, values: dict) -> None:
        if not isinstance(values, dict):
            raise UserError(f"{self.method} {field_name}={values!r}: give a mapping of weight name to value")

    def check_bits(self, bits: int, per_layer: dict) -> None:
        """Bit widths are integers from 1 to 8 (the default and every per-layer one)."""
        self.check_per_layer("bits_per_layer", per_layer)
        for name, b in [("bits", bits), *per_layer.items()]:
            if not isinstance(b, int) or isinstance(b, bool) or b not in BITS:
                raise UserError(f"{self.method} {name}={b}: bit widths must be integers from 1 to 8")


class CompressionMethod:
    """The hooks of one method, called by ``asr.train`` around every optimizer step. The defaults do
    nothing; each method overrides what it needs."""

    def __init__(self, config: MethodConfig) -> None:
        self.config = config

    def prepare(self, model: nn.Module) -> None:
        """Attach what the method needs to the float model (codebooks, parametrizations, masks)."""
        raise NotImplementedError

    def convert(self, model: nn.Module) -> None:
        """Leave the deployable model: plain weights plus the buffers of this module's docstring."""
        raise NotImplementedError

    def convert_loaded(self, model: nn.Module) -> None:
        """Convert a model loaded from a step checkpoint of a run, as it was at that step (pruning
        keeps its masks there instead of pruning to the final targets)."""
        self.convert(model)

    def use_data(self, cfg, tokenizer) -> None:
        """The training config and tokenizer, for methods that need data of their own (calibration)."""

    def param_groups(self, model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def step_begin(self, model: nn.Module, step: int, total: int) -> None:
        """Before the forward of optimizer step ``step`` (0-based) of ``total``."""

    def forward_context(self) -> contextlib.AbstractContextManager:
        """Wraps the training forward pass (e.g. caching parametrized weights)."""
        return contextlib.nullcontext()

    def loss(self, model: nn.Module, step: int, total: int) -> torch.Tensor | None:
        """An extra term added to the task loss (a regularizer), or None."""
        return None

    def before_optimizer(self, model: nn.Module) -> None:
        """After backward, before ``optimizer.step()`` (e.g. gradient masks)."""

    def step_end(self, model: nn.Module, step: int, total: int) -> None:
        """After ``optimizer.step()``; ``step`` counts the steps done (1-based)."""

    def describe(self, model: nn.Module) -> str:
        return ""

    def bytes(self, model: nn.Module) -> int:
        """Bytes on the device of the converted model."""
        return model_bytes(model)


# config dataclass -> its handler class; filled by ``register_handler`` where each handler is defined
_HANDLERS: dict[type, type] = {}


def register_handler(config_type: type):
    """Class decorator: ``config_type``'s handler (torchao's ``register_quantize_module_handler``).
    Each method's module registers its own handler; AAT's lives in ``export.nna.aat`` (it runs the
    emulator's kernels) and is registered when that module is imported."""

    def register(cls: type) -> type:
        if config_type in _HANDLERS and _HANDLERS[config_type] is not cls:
            raise ValueError(f"{config_type.__name__} already has the handler {_HANDLERS[config_type].__name__}")
        _HANDLERS[config_type] = cls
        return cls

    return register


def handler(config: MethodConfig) -> CompressionMethod:
    """A new handler for ``config`` (the class registered for its type)."""
    cls = _HANDLERS.get(type(config))
    if cls is None:
        if isinstance(config, MethodConfig):
            raise UserError(f"compression method {config.method!r}: no handler registered for {type(config).__name__}; "
                            "import the module that defines it (the aat handler is export.nna.aat, which the asr command imports)")
        raise UserError(f"{type(config).__name__}: not a compression config; use one of "
                        f"{', '.join(sorted(c.__name__ for c in _HANDLERS))}")
    return cls(config)


def selected(model: nn.Module, config: MethodConfig):
    """(qualified name, module, parameter name) of every weight ``config`` compresses: ``filter_fn``
    says yes, the name matches no ``exclude`` pattern, it is 2-D or more and not a training-only head."""
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            qualified = f"{module_name}.{name}" if module_name else name
            if (param.dim() >= 2 and not qualified.startswith(TRAINING_ONLY) and config.filter_fn(module, name)
                    and not any(fnmatch.fnmatchcase(qualified, p) for p in config.exclude)):
                yield qualified, module, name


def check_names(model: nn.Module, config: MethodConfig, per_layer: dict, what: str) -> list:
    """The selection as a list; UserError if it is empty or ``per_layer`` names unselected weights."""
    chosen = list(selected(model, config))
    names = {q for q, _, _ in chosen}
    unknown = sorted(set(per_layer) - names)
    if unknown:
        raise UserError(f"{config.method} {what} names weights the config does not select: {', '.join(unknown)}; "
                        f"selected: {', '.join(sorted(names)) or 'none'}")
    if not chosen:
        raise UserError(f"{config.method}: the config selected no weight; check filter_fn and exclude")
    return chosen


def _buffers(model: nn.Module, suffix: str):
    for module_name, module in model.named_modules():
        for buffer_name, value in module.named_buffers(recurse=False):
            if buffer_name.endswith(suffix):
                name = buffer_name[: -len(suffix)]
                yield (f"{module_name}.{name}" if module_name else name), module, name, value


def codebooks(model: nn.Module):
    """(qualified weight name, module, parameter name, codebook) of every codebook-carrying weight."""
    return _buffers(model, CODEBOOK_SUFFIX)


def masks(model: nn.Module):
    """(qualified weight name, module, parameter name, mask) of every pruned weight."""
    return _buffers(model, MASK_SUFFIX)


def attach_buffers(model: nn.Module, state_dict: dict) -> None:
    """Register the codebook and mask buffers named in ``state_dict`` on ``model`` (empty, the
    right shape), so that ``load_state_dict`` of a compressed checkpoint is strict and complete."""
    modules = dict(model.named_modules())
    for key, value in state_dict.items():
        if key.endswith((CODEBOOK_SUFFIX, MASK_SUFFIX)):
            module_name, _, buffer_name = key.rpartition(".")
            module = modules.get(module_name)
            if module is not None and buffer_name not in dict(module.named_buffers(recurse=False)):
                module.register_buffer(buffer_name, torch.empty_like(value))


def deployable_parameters(model: nn.Module):
    """(name, parameter) of every parameter the device holds (training-only heads left out)."""
    return [(n, p) for n, p in model.named_parameters() if not n.startswith(TRAINING_ONLY)]


def deployable_buffers(model: nn.Module):
    """(name, buffer) of the float state the device holds besides parameters (feature
    normalisation); codebooks and masks are accounted with their weights."""
    return [(n, b) for n, b in model.named_buffers()
            if b.is_floating_point() and not n.startswith(TRAINING_ONLY) and not n.endswith((CODEBOOK_SUFFIX, MASK_SUFFIX))]


def fp32_bytes(model: nn.Module) -> int:
    """Bytes of the deployable parameters and float buffers as float32."""
    return sum(p.numel() * 4 for _, p in deployable_parameters(model) + deployable_buffers(model))


def codebook_bits(book: torch.Tensor) -> int:
    return max(1, math.ceil(math.log2(book.numel())))


def model_bytes(model: nn.Module) -> int:
    """Bytes on the device: a codebook weight as ``ceil(log2 K)``-bit indices plus its K float32
    levels; a pruned weight as its non-zeros in float32 plus a bitmask (one bit per weight); every
    other deployable parameter and float buffer (feature normalisation) as float32."""
    special: dict[int, int] = {}
    for _, module, name, book in codebooks(model):
        weight = getattr(module, name)
        special[id(weight)] = math.ceil(weight.numel() * codebook_bits(book) / 8) + book.numel() * 4
    for _, module, name, mask in masks(model):
        weight = getattr(module, name)
        if id(weight) in special:
            raise UserError("model_bytes: a weight is both pruned and on a codebook; that combination is not accounted")
        special[id(weight)] = int(mask.sum()) * 4 + math.ceil(mask.numel() / 8)
    return (sum(special.get(id(p), p.numel() * 4) for _, p in deployable_parameters(model))
            + sum(b.numel() * 4 for _, b in deployable_buffers(model)))


def int8_bytes(model: nn.Module) -> int:
    """Bytes of the model as ``export.nna.lower`` puts it on an int8 NNA: every matrix or kernel one
    byte a weight plus a float32 scale per output channel (one per table for an embedding); vectors
    (biases, norms) and float buffers four bytes an element."""
    modules = dict(model.named_modules())
    total = sum(4 * b.numel() for _, b in deployable_buffers(model))
    for name, p in deployable_parameters(model):
        if p.dim() < 2:
            total += 4 * p.numel()
        else:
            per_tensor = isinstance(modules.get(name.rpartition(".")[0]), nn.Embedding)
            total += p.numel() + 4 * (1 if per_tensor else p.shape[0])
    return total
