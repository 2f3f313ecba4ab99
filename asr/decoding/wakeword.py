"""Wake events from a wake-word detector's per-frame probabilities (``asr.models.wakeword``).

The rule, the same offline (:func:`count_events`) and streaming (:class:`WakeWordSpotter`):

* the probabilities are smoothed by a causal moving average over ``window`` frames (fewer at the start
  of the stream), as wekws smooths its posteriors before the threshold;
* an event fires on frame t when the smoothed value ``q_t`` reaches the threshold while ``q_{t-1}`` was
  below it (a rising edge; the first frame counts as one), unless an event fired less than
  ``refractory`` frames before (a wake word is not said twice within it).

Frames are encoder frames (40 ms for the models here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WakeEvent:
    frame: int  # the encoder frame (from the start of the stream) the event fires on
    score: float  # the smoothed probability on that frame


def smooth(p: np.ndarray, window: int) -> np.ndarray:
    """Causal moving average of ``p`` (T,) over ``window`` frames (the mean of those seen at the start)."""
    p = np.asarray(p, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(p)])
    t = np.arange(1, len(p) + 1)
    lo = np.maximum(t - window, 0)
    return (c[t] - c[lo]) / (t - lo)


def rising_edges(q: np.ndarray, threshold: float, refractory: int) -> list[int]:
    """The frames events fire on in the smoothed probabilities ``q`` (the module's rule)."""
    above = q >= threshold
    edges = np.flatnonzero(above & ~np.concatenate([[False], above[:-1]]))
    fired, last = [], None
    for t in edges.tolist():
        if last is None or t - last >= refractory:
            fired.append(t)
            last = t
    return fired


def count_events(q: np.ndarray, threshold: float, refractory: int) -> int:
    return len(rising_edges(q, threshold, refractory))


@dataclass(frozen=True)
class WakeConfig:
    """The rule's settings (``asr stream --wake-word``; ``asr bench wakeword`` takes the window and the
    refractory frames and sweeps the threshold)."""

    threshold: float = 0.5
    window: int = 3  # frames averaged (120 ms)
    refractory: int = 25  # frames after an event in which no other fires (1 s)

    def spotter(self) -> WakeWordSpotter:
        return WakeWordSpotter(self.threshold, self.window, self.refractory)


class WakeWordSpotter:
    """The rule of the module, fed a chunk of probabilities at a time: ``accept(p)`` returns the events
    that fire in the chunk, with frames counted from the start of the stream."""

    def __init__(self, threshold: float, window: int = 3, refractory: int = 25) -> None:
        if window < 1 or refractory < 0:
            raise ValueError("window >= 1 and refractory >= 0")
        self.threshold, self.window, self.refractory = threshold, window, refractory
        self._tail = np.zeros(0)  # the last window - 1 probabilities
        self._above = False  # q on the previous frame was >= threshold
        self._last: int | None = None
        self._frames = 0

    def accept(self, p: np.ndarray) -> list[WakeEvent]:
        p = np.asarray(p, dtype=np.float64)
        seen = np.concatenate([self._tail, p])
        # the tail is the last window - 1 frames, or every frame so far: smoothing seen is smoothing the stream
        q = smooth(seen, self.window)[len(self._tail) :]
        events = []
        for i, value in enumerate(q.tolist()):
            above = value >= self.threshold
            t = self._frames + i
            if above and not self._above and (self._last is None or t - self._last >= self.refractory):
                events.append(WakeEvent(t, value))
                self._last = t
            self._above = above
        self._frames += len(p)
        self._tail = seen[len(seen) - min(len(seen), self.window - 1):] if self.window > 1 else np.zeros(0)
        return events
