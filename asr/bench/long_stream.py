"""``asr bench long-stream``: the cost of each 100 ms of audio over an hour-long stream without endpoints,
minute by minute, with settled finals (``asr stream``'s default ``--max-segment-length 20``) and without
(``--max-segment-length 0``, the hypothesis and every partial line growing with the stream).

    asr bench long-stream --model-dir exp/demo/onnx --audio-dir data/synth-small/test --minutes 60

The stream is the split's utterances, one after another with 0.2 s of silence between them, repeated
until it is ``--minutes`` long, decoded as ``asr stream --no-endpoint`` decodes it: pieces of 100 ms,
``OnnxRecognizer.decode`` and the JSON lines of ``asr.streaming.jsonl`` (written to a counter, not a
terminal). The cost of a piece is the wall time of those three steps; a minute's cost is the sum over
its 600 pieces, as milliseconds per second of audio. Rows: greedy and modified beam search, each with
settled finals over ``--minutes`` and without over ``--unbounded-minutes`` (shorter: its cost grows).
The last line holds each row's cost of the last minute over the first (these machines are noisy:
ratios from one run), the longest line printed and the resident memory at the first and last minute.
One thread. ``--json`` writes the rows with their per-minute costs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from asr.audio import read_audio
from asr.data.librispeech import test_set
from asr.errors import UserError
from asr.fileio import write_text_atomic
from asr.frontend import PIECE_SAMPLES, SAMPLE_RATE_HZ
from asr.streaming.jsonl import _Printer
from asr.streaming.onnx import OnnxRecognizer, OnnxTransducer

GAP_S = 0.2  # silence between two utterances of the stream
PIECES_PER_MINUTE = 60 * SAMPLE_RATE_HZ // PIECE_SAMPLES


def rss_mb() -> float:
    """This process's resident memory now (``VmRSS``), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pieces(audio: list[np.ndarray], minutes: float):
    """The stream, ``PIECE_SAMPLES`` at a time: the utterances in turn, each followed by ``GAP_S`` of zeros,
    repeated until ``minutes`` long."""
    gap = np.zeros(int(GAP_S * SAMPLE_RATE_HZ), np.float32)
    total, buffered, i = int(minutes * 60 * SAMPLE_RATE_HZ), np.zeros(0, np.float32), 0
    while total > 0:
        while len(buffered) < PIECE_SAMPLES:
            buffered = np.concatenate([buffered, audio[i % len(audio)], gap])
            i += 1
        n = min(PIECE_SAMPLES, total)
        yield buffered[:n]
        buffered, total = buffered[n:], total - n


def run_stream(model, audio: list[np.ndarray], method: str, beam: int, minutes: float, max_segment_s: float | None) -> dict:
    """Decode the stream as ``asr stream --no-endpoint`` does; per-minute cost (ms per second of audio)."""
    rec = OnnxRecognizer(model, method, beam, endpoint=None, keep_calls=False, max_segment_s=max_segment_s)
    stream = rec.create_stream()
    lines = {"count": 0, "longest": 0, "finals": 0}

    def write(line: str) -> None:
        lines["count"] += 1
        lines["longest"] = max(lines["longest"], len(line.encode()))
        lines["finals"] += '"type": "final"' in line

    printer = _Printer(rec, ["long"], write, partials=True)
    per_minute, rss, spent = [], [], 0.0
    for n, piece in enumerate(pieces(audio, minutes), 1):
        t0 = time.perf_counter()
        stream.accept_waveform(piece)
        rec.decode([stream])
        printer.flush([stream])
        spent += time.perf_counter() - t0
        if n % PIECES_PER_MINUTE == 0:
            per_minute.append(1000 * spent / 60)
            rss.append(rss_mb())
            spent = 0.0
    stream.input_finished()
    rec.decode([stream])
    printer.flush([stream])
    return {"method": method, "beam": beam if method == "modified_beam_search" else None,
            "max_segment_s": max_segment_s, "minutes": minutes, "ms_per_audio_s": per_minute,
            "first_minute": per_minute[0], "last_minute": per_minute[-1], "last_over_first": per_minute[-1] / per_minute[0],
            "longest_line_bytes": lines["longest"], "lines": lines["count"], "finals": lines["finals"],
            "tokens": len(stream.tokens), "rss_first_mb": rss[0], "rss_last_mb": rss[-1]}


def run(a) -> None:
    torch.set_num_threads(1)
    if a.minutes < 2 or a.unbounded_minutes < 2:
        raise UserError(f"--minutes {a.minutes} / --unbounded-minutes {a.unbounded_minutes}: each must be at least 2 "
                        "(the first minute is compared with the last)")
    files, _ = test_set(a.audio_dir, a.max_utts or None)
    audio = [read_audio(str(f)) for f in files]
    model = OnnxTransducer(a.model_dir, num_threads=1)
    rows = []
    for method in ("greedy", "modified_beam_search"):
        for max_segment_s, minutes in ((a.max_segment_length, a.minutes), (None, a.unbounded_minutes)):
            rows.append(run_stream(model, audio, method, a.beam, minutes, max_segment_s))
            r = rows[-1]
            print(f"  {method} settled={max_segment_s or 'off'}: {minutes:g} min, {r['first_minute']:.1f} -> "
                  f"{r['last_minute']:.1f} ms per audio s", flush=True)
    print(f"\n{len(files)} utterances of {a.audio_dir}, repeated; no endpoints; 100 ms pieces; one thread\n")
    print("| search | settled finals | minutes | ms per audio s, first minute | last minute | last / first "
          "| longest line, bytes | finals | RSS first / last minute, MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        search = "greedy" if r["method"] == "greedy" else f"beam {r['beam']}"
        settled = f"every {r['max_segment_s']:g} s" if r["max_segment_s"] else "off"
        print(f"| {search} | {settled} | {r['minutes']:g} | {r['first_minute']:.2f} | {r['last_minute']:.2f} | "
              f"{r['last_over_first']:.2f} | {r['longest_line_bytes']} | {r['finals']} | {r['rss_first_mb']:.0f} / {r['rss_last_mb']:.0f} |")
    print("\n" + " ".join(f"{'greedy' if r['method'] == 'greedy' else 'beam'}_{'settled' if r['max_segment_s'] else 'unbounded'}"
                          f"_last_over_first={r['last_over_first']:.2f}" for r in rows))
    if a.json:
        write_text_atomic(a.json, json.dumps({"model_dir": str(a.model_dir), "audio_dir": str(a.audio_dir), "rows": rows},
                                             indent=1) + "\n")
        print(f"wrote {a.json}")
