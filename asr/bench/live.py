"""The live-microphone session of ``asr bench latency``, engine side: each test utterance is fed in
100 ms pieces (then silence) and whatever is ready is decoded after each piece, every step timed, until
the first endpoint or the end of input; the parent (``asr.bench.latency``) replays the timings on a
virtual real-time clock. An engine's process is one of ``asr.bench.sherpa_engine`` (sherpa-onnx),
``asr.bench.onnx_engine`` and ``asr.bench.torch_engine`` (ours); each prints one JSON object: the
traces and the process's peak resident memory. This module imports no torch, so sherpa-onnx's process measures sherpa-onnx alone.

A session is any object with ``accept(piece)``, ``finish()`` (tail padding and flush), ``step()``
(decode what is ready; False when nothing was), ``poll()`` ((stream time of the first token's frame end
or None, the endpoint reason or None); called outside the timed steps) and ``result()`` ((symbols, text)).

Shape legend: S samples.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

from asr.audio import read_audio
from asr.frontend import PIECE_SAMPLES, SAMPLE_RATE_HZ


def engine_arguments() -> argparse.ArgumentParser:
    """The command line of an engine's process (what ``asr.bench.latency`` passes)."""
    p = argparse.ArgumentParser()
    p.add_argument("engine")
    p.add_argument("model_dir")
    p.add_argument("files_list")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--chunk-feature-frames", type=int, default=None)
    p.add_argument("--method", default="greedy")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-silence", type=float, default=3.0)
    return p


def microphone_pieces(x: np.ndarray, max_silence_s: float):
    audio = np.concatenate([x, np.zeros(int(max_silence_s * SAMPLE_RATE_HZ), np.float32)])
    for start in range(0, len(audio), PIECE_SAMPLES):
        yield start, audio[start : start + PIECE_SAMPLES], min(start + PIECE_SAMPLES, len(audio)) / SAMPLE_RATE_HZ


def trace(session, path: str, max_silence_s: float) -> dict:
    """Feed one utterance and then silence piece by piece, decoding what is ready after each piece,
    until the first endpoint (or the end of input); times every step for the parent's replay."""
    pieces, calls, ev = [], [], {"first": None, "final": None}

    def drain(k: int, steps: list[float]) -> None:
        while ev["final"] is None:
            t = time.perf_counter()
            if not session.step():
                return
            steps.append(time.perf_counter() - t)
            calls.append(steps[-1])
            first, final = session.poll()
            if ev["first"] is None and first is not None:
                ev["first"] = [k, len(steps) - 1, first]
            if final is not None:
                ev["final"] = [k, len(steps) - 1, final]

    fed = 0.0
    for k, (_, piece, arrive_s) in enumerate(microphone_pieces(read_audio(path), max_silence_s)):
        t = time.perf_counter()
        session.accept(piece)
        steps = [time.perf_counter() - t]
        drain(k, steps)
        pieces.append([arrive_s, steps])
        fed = arrive_s
        if ev["final"] is not None:
            break
    else:  # no endpoint: the input ends (tail padding, flush) when the silence runs out
        k = len(pieces)
        t = time.perf_counter()
        session.finish()
        steps = [time.perf_counter() - t]
        drain(k, steps)
        if ev["final"] is None:  # the last chunk decoded (or nothing was left): the final result is out
            ev["final"] = [k, len(steps) - 1, "end"]
        pieces.append([fed, steps])
    tokens, text = session.result()
    return {"pieces": pieces, "calls": calls, "fed_s": fed, **ev, "tokens": tokens, "text": text}


def peak_rss_mb() -> float:
    """This process's peak resident memory. /proc's VmHWM belongs to the current program image;
    getrusage's ru_maxrss survives exec and would report the parent's peak."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: KiB on most systems
