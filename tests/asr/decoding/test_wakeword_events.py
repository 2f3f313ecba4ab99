"""Wake events (``asr.decoding.wakeword``): the smoothing against its definition, the events by hand, and
the streaming spotter equal to the offline rule whatever the chunking."""

from __future__ import annotations

import numpy as np
import pytest

from asr.decoding.wakeword import WakeWordSpotter, count_events, rising_edges, smooth


def test_smooth_is_the_causal_mean():
    p = np.array([0.0, 1.0, 0.5, 0.25, 1.0])
    expected = [0.0, 0.5, 0.5, 1.75 / 3, 1.75 / 3]
    np.testing.assert_allclose(smooth(p, 3), expected)
    np.testing.assert_allclose(smooth(p, 1), p)


def test_events_by_hand():
    q = np.array([0.1, 0.6, 0.7, 0.2, 0.8, 0.1, 0.1, 0.1, 0.9, 0.9])
    assert rising_edges(q, 0.5, refractory=0) == [1, 4, 8]
    assert rising_edges(q, 0.5, refractory=4) == [1, 8]  # frame 4 is 3 frames after 1
    assert rising_edges(q, 0.85, refractory=4) == [8]
    assert count_events(np.array([0.9, 0.9]), 0.5, 25) == 1  # the first frame counts as a rising edge
    assert count_events(np.zeros(0), 0.5, 25) == 0


@pytest.mark.parametrize("chunk", [1, 3, 7, 50])
def test_streaming_equals_offline(chunk):
    rng = np.random.default_rng(0)
    p = np.clip(np.convolve(rng.random(400), np.ones(6) / 4, mode="same"), 0, 1)
    for threshold, window, refractory in ((0.6, 3, 10), (0.8, 5, 0), (0.5, 1, 25)):
        q = smooth(p, window)
        spotter = WakeWordSpotter(threshold, window, refractory)
        events = [e for i in range(0, len(p), chunk) for e in spotter.accept(p[i : i + chunk])]
        assert [e.frame for e in events] == rising_edges(q, threshold, refractory) and events
        np.testing.assert_allclose([e.score for e in events], q[[e.frame for e in events]])
