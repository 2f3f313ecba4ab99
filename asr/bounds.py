"""The allowed values of every number in a config: each config dataclass maps its numeric fields to a
:class:`Range` in a ``BOUNDS`` class attribute and calls :func:`check_bounds` first thing in its
``__post_init__``, so a value from YAML, ``--set``, a checkpoint or Python code is checked before
anything is built or allocated (:func:`asr.config.from_dict` adds the file's name to the error). A
test (tests/asr/test_config_bounds.py) keeps every int and float field of every config covered.

The upper bounds are far above any real model or run and only stop absurd values: a 2,000,000-wide
layer is refused with one line instead of allocating 64 TB."""

from __future__ import annotations

import math
from dataclasses import dataclass

from asr.errors import UserError


@dataclass(frozen=True)
class Range:
    """``low`` <= value <= ``high`` (strict where ``*_open``); None: unbounded on that side."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


COUNT = Range(1)  # steps, intervals, utterances: at least one
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, low_open=True)
FRACTION = Range(0, 1)
DROPOUT = Range(0, 1, high_open=True)
WIDTH = Range(1, 16384)  # a layer's size: a 16384-wide LSTM already holds 2 G weights
LAYERS = Range(1, 256)
KERNEL = Range(1, 1023)


def check_bounds(obj, section: str) -> None:
    """UserError for the first field of config ``obj`` (a number, or a list or tuple of numbers) outside its
    ``BOUNDS`` range; ``section`` is its dotted place in a config file (``optim``, ``model.encoder``)."""
    for name, bounds in type(obj).BOUNDS.items():
        value = getattr(obj, name)
        for number in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise UserError(f"{section}.{name}={value!r}: expected {'numbers' if isinstance(value, (list, tuple)) else 'a number'}")
            if number not in bounds:
                raise UserError(f"{section}.{name}={value!r}: must be {bounds}")
