"""``asr bench latency``: the latency a user feels, for every way of running one model, in one run.

Engines, side by side on the same utterances, method and thread count:

* ``pytorch-fp32``: the checkpoint in PyTorch (``asr.streaming.pytorch.TorchTransducer``: the module the
  export traced, run eagerly) through the same streaming loop as ``asr stream``;
* ``onnx-fp32`` and ``onnx-int8-<flavour>``: ``asr stream``'s onnxruntime loop
  (``asr.streaming.onnx.OnnxStream``) on the exported folder and each ``int8-*`` folder in it;
* ``sherpa-onnx-fp32``: the PyPI ``sherpa_onnx.OnlineRecognizer`` on the float32 folder.

Each engine runs in its own subprocess (its peak RSS is its own; sherpa-onnx's contract errors
cannot kill the benchmark). Every utterance is one live-microphone session, replayed on a virtual
clock: the audio and then silence (``--max-silence``) arrive in 100 ms pieces at real-time pace; after
each piece the engine decodes whatever is ready, with sherpa-onnx's endpoint rules on
(``asr.streaming.endpoint``; rule2 = 1.2 s of trailing silence after speech). The session ends at
the first endpoint, or, if none fires, when the input ends (0.66 s of tail padding, then flush).
Measured compute times of every step (feature extraction of a piece, each encoder call with its
search) advance the clock; a piece cannot be processed before it has arrived.

Per engine:

* ``rtf_1thread`` / ``rtf_2threads``: compute seconds / audio seconds fed (separate runs);
* ``chunk_ms_p50/p95/p99``: compute time of one encoder call plus its search (1 thread);
* ``first_token_ms_p50/p95``: virtual time the first token was out minus the end of the encoder frame
  it is aligned to (chunk buffering, look-ahead and compute);
* ``upl_ms_p50/p95``, user-perceived latency: virtual time of the final result minus the end of
  speech (the last 10 ms frame within 35 dB of the utterance's loudest frame), so endpointing and tail
  padding are included;
* ``wer`` (%, against the transcripts), ``bytes`` on disk (the three graphs; PyTorch: float32
  inference weights), ``peak_rss_mb`` (our engines import PyTorch, which the search runs on: most
  of their resident memory).

Shape legend: S samples.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import kaldialign
import numpy as np
import sherpa_onnx
import torch

from asr.audio import read_audio
from asr.chunking import ENCODER_FRAME_MS, TAIL_PADDING_S
from asr.data.librispeech import read_transcripts
from asr.errors import UserError
from asr.features import HIGH_FREQ_HZ, LOW_FREQ_HZ, NUM_MEL_BINS, SAMPLE_RATE_HZ
from asr.fileio import update_json, write_text_atomic
from asr.checkpoint import load_model
from asr.streaming.endpoint import EndpointConfig
from asr.streaming.onnx import OnnxStream, OnnxTransducer, decode_streams
from asr.streaming.pytorch import TorchTransducer
from export.onnx import read_metadata

HELP = ("real-time factor, per-chunk, first-token and user-perceived latency: PyTorch, ONNX fp32, int8, "
        "sherpa-onnx")
DESCRIPTION = ("Replays each test utterance as a live microphone session (100 ms pieces, then silence until an "
               "endpoint) on every engine; see asr/bench/latency.py for the definitions.")
EXAMPLE = ("example:\n  asr bench latency --model-dir exp/demo/onnx --audio-dir data/synth-small/test "
           "--checkpoint exp/demo/final.pt --json exp/demo/latency.json --plot exp/demo/latency.png")
ENCODER_FRAME_S = ENCODER_FRAME_MS / 1000
PIECE_S = 0.1  # microphone buffer
SPEECH_FLOOR_DB = 35.0  # a 10 ms frame this far below the loudest one counts as silence
JSON_KEYS = ("engine", "rtf_1thread", "rtf_2threads", "wer", "bytes", "first_token_ms_p50", "upl_ms_p50", "upl_ms_p95")


# ---------------------------------------------------------------------------------------------
# engines (run inside the child process)


def _torch_transducer(checkpoint: str, model_dir: Path, threads: int) -> TorchTransducer:
    """The checkpoint at the exported folder's chunking, with the folder's symbols."""
    torch.set_num_threads(threads)
    chunk = int(read_metadata(model_dir / "encoder.onnx")["decode_chunk_len"])
    return TorchTransducer(checkpoint, model_dir / "tokens.txt", chunk)


def _pieces(x: np.ndarray, max_silence_s: float):
    audio = np.concatenate([x, np.zeros(int(max_silence_s * SAMPLE_RATE_HZ), np.float32)])
    step = int(PIECE_S * SAMPLE_RATE_HZ)
    for start in range(0, len(audio), step):
        yield start, audio[start : start + step], min(start + step, len(audio)) / SAMPLE_RATE_HZ


class _OurSession:
    """One utterance on ``asr stream``'s loop (OnnxStream, endpointing on)."""

    def __init__(self, model, method: str, beam: int) -> None:
        self.model = model
        self.s = OnnxStream(model, method, beam, TAIL_PADDING_S, endpoint=EndpointConfig(), auto_decode=False)

    def accept(self, piece: np.ndarray) -> None:
        self.s.accept_waveform(piece)

    def finish(self) -> None:  # appends the tail padding itself
        self.s.input_finished()

    def step(self) -> bool:
        return decode_streams([self.s]) is not None

    def poll(self) -> tuple[float | None, str | None]:
        first = self.s.first_token
        return (None if first is None else first.time_s + ENCODER_FRAME_S), (self.s.finals[0].reason if self.s.finals else None)

    def result(self) -> tuple[list[str], str]:
        final = self.s.finals[0] if self.s.finals else None
        tokens = final.tokens if final else self.s.tokens
        return [self.model.symbols[t].replace("\u2581", " ") for t in tokens], final.text if final else self.s.text


class _SherpaSession:
    """One utterance on sherpa-onnx's OnlineRecognizer (endpoint detection on)."""

    def __init__(self, rec) -> None:
        self.rec, self.s, self.r = rec, rec.create_stream(), None

    def accept(self, piece: np.ndarray) -> None:
        self.s.accept_waveform(SAMPLE_RATE_HZ, piece)

    def finish(self) -> None:
        self.s.accept_waveform(SAMPLE_RATE_HZ, np.zeros(int(TAIL_PADDING_S * SAMPLE_RATE_HZ), np.float32))
        self.s.input_finished()

    def step(self) -> bool:
        if not self.rec.is_ready(self.s):
            return False
        self.rec.decode_stream(self.s)
        return True

    def poll(self) -> tuple[float | None, str | None]:  # called outside the timed steps
        self.r = self.rec.get_result_all(self.s)
        first = self.r.timestamps[0] + 0.04 if self.r.tokens else None  # the end of its 40 ms encoder frame
        return first, ("endpoint" if self.rec.is_endpoint(self.s) else None)

    def result(self) -> tuple[list[str], str]:
        self.r = self.rec.get_result_all(self.s)
        return list(self.r.tokens), self.r.text.strip()


def _trace(session, path: str, max_silence_s: float) -> dict:
    """Feed one utterance and then silence piece by piece, decoding what is ready after each piece,
    until the first endpoint (or the end of input); times every step for :func:`replay`."""
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
    for k, (_, piece, arrive_s) in enumerate(_pieces(read_audio(path), max_silence_s)):
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


def child_main(argv: list[str]) -> None:
    """``python -m asr.bench.latency ENGINE MODEL_DIR FILES_LIST ...``: one engine, JSON on stdout."""
    p = argparse.ArgumentParser()
    p.add_argument("engine")
    p.add_argument("model_dir")
    p.add_argument("files_list")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--method", default="greedy")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-silence", type=float, default=3.0)
    a = p.parse_args(argv)
    files = Path(a.files_list).read_text().split("\n")
    d = Path(a.model_dir)
    if a.engine == "sherpa-onnx-fp32":
        cfg = EndpointConfig()
        rec = sherpa_onnx.OnlineRecognizer.from_transducer(
            tokens=str(d / "tokens.txt"), encoder=str(d / "encoder.onnx"), decoder=str(d / "decoder.onnx"),
            joiner=str(d / "joiner.onnx"), num_threads=a.threads, sample_rate=SAMPLE_RATE_HZ, feature_dim=NUM_MEL_BINS,
            low_freq=LOW_FREQ_HZ, high_freq=HIGH_FREQ_HZ, dither=0.0,
            decoding_method="greedy_search" if a.method == "greedy" else a.method, max_active_paths=a.beam,
            enable_endpoint_detection=True, rule1_min_trailing_silence=cfg.rule1.min_trailing_silence_s,
            rule2_min_trailing_silence=cfg.rule2.min_trailing_silence_s,
            rule3_min_utterance_length=cfg.rule3.min_utterance_length_s)
        traces = [_trace(_SherpaSession(rec), f, a.max_silence) for f in files]
    else:
        torch.set_num_threads(a.threads)
        if a.engine == "pytorch-fp32":
            model = _torch_transducer(a.checkpoint, d, a.threads)
        else:
            model = OnnxTransducer(d, num_threads=a.threads)
        traces = [_trace(_OurSession(model, a.method, a.beam), f, a.max_silence) for f in files]
    print(json.dumps({"traces": traces, "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident memory. /proc's VmHWM belongs to the current program image;
    getrusage's ru_maxrss survives exec and would report the parent's peak."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: KiB on most systems


# ---------------------------------------------------------------------------------------------
# the parent: run the engines, replay the traces on the virtual clock, report


def speech_end_s(x: np.ndarray) -> float:
    """End of the last 10 ms frame within ``SPEECH_FLOOR_DB`` of the loudest frame."""
    hop = SAMPLE_RATE_HZ // 100
    frames = x[: len(x) // hop * hop].reshape(-1, hop)
    if not len(frames):
        return 0.0
    energy = 10 * np.log10((frames.astype(np.float64) ** 2).mean(axis=1) + 1e-12)
    loud = np.nonzero(energy >= energy.max() - SPEECH_FLOOR_DB)[0]
    return (loud[-1] + 1) * hop / SAMPLE_RATE_HZ


def replay(trace: dict) -> tuple[float | None, float | None]:
    """Virtual times (s) at which the first token and the final result were out."""
    clock, first, final = 0.0, None, None
    for k, (arrive_s, steps) in enumerate(trace["pieces"]):
        clock = max(clock, arrive_s)
        for j, d in enumerate(steps):
            clock += d
            if trace["first"] is not None and trace["first"][:2] == [k, j]:
                first = clock
            if trace["final"] is not None and trace["final"][:2] == [k, j]:
                final = clock
    return first, final


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _engines(model_dir: Path, checkpoint: str | None) -> list[tuple[str, Path]]:
    found = [("pytorch-fp32", model_dir)] if checkpoint else []
    found.append(("onnx-fp32", model_dir))
    for flavour in ("dynamic", "static", "accelerator"):
        if (model_dir / f"int8-{flavour}" / "encoder.onnx").is_file():
            found.append((f"onnx-int8-{flavour}", model_dir / f"int8-{flavour}"))
    found.append(("sherpa-onnx-fp32", model_dir))
    return found


def _run_child(engine: str, d: Path, files_list: Path, checkpoint, method, beam, threads, max_silence) -> dict:
    cmd = [sys.executable, "-m", "asr.bench.latency", engine, str(d), str(files_list), "--method", method,
           "--beam", str(beam), "--threads", str(threads), "--max-silence", str(max_silence)]
    if checkpoint:
        cmd += ["--checkpoint", checkpoint]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode:
        last = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
        raise UserError(f"{engine} on {d}: the benchmark process failed ({last[:300]})")
    return json.loads(p.stdout)


def _model_bytes(engine: str, d: Path, checkpoint: str | None) -> int:
    if engine == "pytorch-fp32":
        model = load_model(checkpoint)[0]
        return sum(p.numel() * 4 for m in (model.encoder, model.predictor, model.joiner) for p in m.parameters())
    return sum((d / g).stat().st_size for g in ("encoder.onnx", "decoder.onnx", "joiner.onnx"))


def bench_latency(model_dir: str, data: str, checkpoint: str | None = None, max_utts: int = 100,
                  method: str = "greedy", beam: int = 4, threads: tuple[int, ...] = (1, 2), max_silence_s: float = 3.0,
                  engines: list[str] | None = None, json_out: str | None = None,
                  plot_out: str | None = None) -> tuple[list[dict], dict]:
    """Run every engine (see the module docstring); returns one row per engine and a summary
    (sherpa-onnx agreement, RTF ratio, best int8 flavour). ``json_out``: the rows as a JSON list."""
    d = Path(model_dir)
    if not (d / "encoder.onnx").is_file():
        raise UserError(f"{d}: no encoder.onnx; export the model first: asr export --checkpoint CKPT --out {d}")
    if checkpoint and not Path(checkpoint).is_file():
        raise UserError(f"--checkpoint {checkpoint}: no such file")
    if method not in ("greedy", "modified_beam_search"):
        raise UserError(f"--decoding-method {method}: use greedy or modified_beam_search")
    if max_utts < 1 or beam < 1:
        raise UserError(f"--max-utts {max_utts} and --beam {beam}: both must be at least 1")
    if not threads or threads[0] != 1 or min(threads) < 1:
        raise UserError(f"--threads {' '.join(map(str, threads))}: start with 1 (the latency columns and the "
                        "ratios are measured at 1 thread), e.g. --threads 1 2")
    if not max_silence_s >= 0:
        raise UserError(f"--max-silence {max_silence_s}: must be a number of seconds >= 0")
    refs = read_transcripts(Path(data))
    files = sorted(Path(data).rglob("*.flac"))[:max_utts]
    if not files:
        raise UserError(f"{data}: no .flac files; pass a LibriSpeech-layout folder such as data/synth-small/test")
    missing = [f for f in files if f.stem not in refs]
    if missing:
        raise UserError(f"{missing[0]}: no transcript for it in {data} (*.trans.txt); pass a LibriSpeech-layout folder")
    chosen = _engines(d, checkpoint)
    if engines:
        unknown = sorted(set(engines) - {e for e, _ in chosen})
        if unknown:
            raise UserError(f"--engines {' '.join(unknown)}: not available here; choose from {', '.join(e for e, _ in chosen)}")
        chosen = [(e, p) for e, p in chosen if e in engines]
    audio = {f: read_audio(str(f)) for f in files}
    ends = {f: speech_end_s(x) for f, x in audio.items()}
    out_dir = Path(json_out).parent if json_out else Path(".")
    files_list = out_dir / f".latency-files-{os.getpid()}.txt"
    out_dir.mkdir(parents=True, exist_ok=True)
    files_list.write_text("\n".join(map(str, files)))
    rows, raw = [], {}
    try:
        for engine, path in chosen:
            runs = {}
            for n in threads:
                t0 = time.perf_counter()
                runs[n] = _run_child(engine, path, files_list, checkpoint, method, beam, n, max_silence_s)
                print(f"  {engine}, {n} thread{'s' if n > 1 else ''}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            first = runs[threads[0]]
            row = {"engine": engine, "model_dir": str(path), "method": method, "beam": beam if method != "greedy" else None,
                   "utts": len(files)}
            for n in sorted({1, 2, *threads}):  # rtf_1thread and rtf_2threads always (None if not run)
                r = runs.get(n)
                row[f"rtf_{n}thread{'s' if n > 1 else ''}"] = (
                    sum(sum(st) for t in r["traces"] for _, st in t["pieces"]) / sum(t["fed_s"] for t in r["traces"])
                    if r else None)
            errs = words = 0
            firsts, upls = [], []
            for f, t in zip(files, first["traces"]):
                ref = refs[f.stem].split()
                errs += kaldialign.edit_distance(ref, t["text"].split())["total"]
                words += len(ref)
                ft, fin = replay(t)
                if ft is not None:
                    firsts.append(1000 * (ft - t["first"][2]))
                if fin is not None:
                    upls.append(1000 * (fin - ends[f]))
            calls = [1000 * c for t in first["traces"] for c in t["calls"]]
            row.update({"wer": 100 * errs / max(words, 1), "bytes": _model_bytes(engine, path, checkpoint),
                        "chunk_ms_p50": _pct(calls, 50), "chunk_ms_p95": _pct(calls, 95), "chunk_ms_p99": _pct(calls, 99),
                        "first_token_ms_p50": _pct(firsts, 50), "first_token_ms_p95": _pct(firsts, 95),
                        "upl_ms_p50": _pct(upls, 50), "upl_ms_p95": _pct(upls, 95),
                        "peak_rss_mb": first["peak_rss_mb"], "threads_for_latency": threads[0]})
            rows.append(row)
            raw[engine] = {"calls": calls, "first": firsts, "upl": upls,
                           "tokens": [t["tokens"] for t in first["traces"]]}
    finally:
        files_list.unlink(missing_ok=True)
    if json_out:
        write_text_atomic(json_out, json.dumps(rows, indent=1) + "\n")
    if plot_out:
        plot(raw, plot_out)
    return rows, _summary(rows, raw)


def _summary(rows: list[dict], raw: dict) -> dict:
    by = {r["engine"]: r for r in rows}
    s = {}
    ours, sherpa = by.get("onnx-fp32"), by.get("sherpa-onnx-fp32")
    if ours and sherpa:
        same = sum(a == b for a, b in zip(raw["onnx-fp32"]["tokens"], raw["sherpa-onnx-fp32"]["tokens"]))
        s.update({"sherpa_tokens_equal": same, "utts": ours["utts"], "sherpa_tokens_match": same == ours["utts"],
                  "stream_rtf": ours["rtf_1thread"], "sherpa_rtf": sherpa["rtf_1thread"],
                  "stream_vs_sherpa_rtf": ours["rtf_1thread"] / sherpa["rtf_1thread"]})
    int8 = [r for r in rows if r["engine"].startswith("onnx-int8-")]
    if ours and int8:
        best = min(int8, key=lambda r: (r["wer"], r["rtf_1thread"]))
        fastest = min(int8, key=lambda r: r["rtf_1thread"])
        s.update({"best_int8": best["engine"], "onnx_fp32_wer": ours["wer"], "onnx_int8_wer": best["wer"],
                  "fp32_bytes": ours["bytes"], "int8_bytes": best["bytes"],
                  "fastest_int8": fastest["engine"], "int8_speedup": ours["rtf_1thread"] / fastest["rtf_1thread"]})
    return s


def plot(raw: dict, path: str) -> None:
    """Box plots of per-chunk compute, first-token and user-perceived latency per engine (PNG)."""
    # lazy: matplotlib picks its backend when it is imported; only --plot needs it, with Agg
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after the backend is chosen

    names = list(raw)
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.5 * len(names) + 2.5))
    for ax, key, title in zip(axes, ("calls", "first", "upl"),
                              ("compute per encoder call (ms)", "first-token latency (ms)", "user-perceived latency (ms)")):
        ax.boxplot([raw[n][key] or [np.nan] for n in names], orientation="horizontal", whis=(5, 95), showfliers=False)
        ax.set_yticks(range(1, len(names) + 1), names if ax is axes[0] else [""] * len(names))
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("asr bench latency (boxes: p25-p75, whiskers: p5-p95)")
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def table(rows: list[dict]) -> str:
    def f(v, spec):
        return "-" if v is None else format(v, spec)

    lines = ["| engine | WER % | RTF 1 thread | RTF 2 threads | chunk ms p50 / p95 / p99 | first token ms p50 / p95 | "
             "UPL ms p50 / p95 | MB on disk | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['engine']} | {r['wer']:.2f} | {f(r['rtf_1thread'], '.4f')} | {f(r['rtf_2threads'], '.4f')} | "
                     f"{f(r['chunk_ms_p50'], '.1f')} / {f(r['chunk_ms_p95'], '.1f')} / {f(r['chunk_ms_p99'], '.1f')} | "
                     f"{f(r['first_token_ms_p50'], '.0f')} / {f(r['first_token_ms_p95'], '.0f')} | "
                     f"{f(r['upl_ms_p50'], '.0f')} / {f(r['upl_ms_p95'], '.0f')} | {r['bytes'] / 1e6:.2f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", required=True, help="what 'asr export' wrote (int8-* subfolders are benchmarked too)")
    p.add_argument("--audio-dir", required=True, help="LibriSpeech-layout folder of flac files and transcripts")
    p.add_argument("--checkpoint", default=None, help="also run this checkpoint in PyTorch (pytorch-fp32)")
    p.add_argument("--max-utts", type=int, default=100, help="first N utterances (default %(default)s)")
    p.add_argument("--decoding-method", default="greedy", choices=["greedy", "modified_beam_search"])
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="thread counts for the RTF columns; latency percentiles use the first (default 1 2)")
    p.add_argument("--max-silence", type=float, default=3.0, help="seconds of silence fed after each utterance")
    p.add_argument("--engines", nargs="+", default=None, help="a subset, e.g. onnx-fp32 sherpa-onnx-fp32")
    p.add_argument("--json", default=None, help="write one object per engine to this JSON file")
    p.add_argument("--plot", default=None, help="write box plots of the latency distributions to this PNG")
    p.add_argument("--results-json", default=None,
                   help="merge onnx_fp32_wer, onnx_int8_wer, int8/fp32_encoder_bytes, stream_rtf, sherpa_rtf, "
                        "sherpa_tokens_match into this JSON")


RESULTS_ENGINES = "--results-json needs the engines onnx-fp32, sherpa-onnx-fp32 and an onnx-int8-* one in the run"


def results(summary: dict, model_dir: str, method: str, beam: int) -> dict:
    """The keys ``--results-json`` merges into a results file (the demo's ``exp/demo/results.json``)."""
    best = Path(model_dir) / summary["best_int8"].replace("onnx-", "")
    return {
        "onnx_fp32_wer": round(summary["onnx_fp32_wer"], 3), "onnx_int8_wer": round(summary["onnx_int8_wer"], 3),
        "onnx_int8_flavour": summary["best_int8"], "int8_encoder_bytes": (best / "encoder.onnx").stat().st_size,
        "fp32_encoder_bytes": (Path(model_dir) / "encoder.onnx").stat().st_size,
        "stream_rtf": round(summary["stream_rtf"], 5), "sherpa_rtf": round(summary["sherpa_rtf"], 5),
        "sherpa_tokens_match": summary["sherpa_tokens_match"], "latency_utts": summary["utts"],
        "latency_method": method if method == "greedy" else f"{method}, beam {beam}"}


def run(args) -> None:
    chosen = set(args.engines or [])
    if args.results_json and args.engines and not ({"onnx-fp32", "sherpa-onnx-fp32"} <= chosen
                                                   and any(e.startswith("onnx-int8-") for e in chosen)):
        raise UserError(RESULTS_ENGINES)
    rows, summary = bench_latency(args.model_dir, args.audio_dir, args.checkpoint, args.max_utts, args.decoding_method,
                                  args.beam, tuple(args.threads), args.max_silence, args.engines, args.json, args.plot)
    label = args.decoding_method if args.decoding_method == "greedy" else f"{args.decoding_method}, beam {args.beam}"
    print(f"{rows[0]['utts']} utterances, {label}; latency columns at {args.threads[0]} thread(s)")
    print(table(rows))
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
    if args.results_json:
        if "onnx_int8_wer" not in summary or "sherpa_rtf" not in summary:
            raise UserError(RESULTS_ENGINES)
        update_json(args.results_json, results(summary, args.model_dir, args.decoding_method, args.beam))
        print(f"updated {args.results_json}")


if __name__ == "__main__":
    child_main(sys.argv[1:])
