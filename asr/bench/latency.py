"""``asr bench latency``: the latency a user feels, for every way of running one model, in one run.

Engines, side by side on the same utterances, method and thread count:

* ``pytorch-fp32``: the checkpoint in PyTorch (``asr.streaming.pytorch.TorchTransducer``: the module the
  export traced, run eagerly) through the same streaming loop as ``asr stream``;
* ``onnx-fp32`` and ``onnx-int8-<flavour>``: ``asr stream``'s onnxruntime loop
  (``asr.streaming.onnx.OnnxStream``) on the exported folder and each ``int8-*`` folder in it;
* ``sherpa-onnx-fp32``: the PyPI ``sherpa_onnx.OnlineRecognizer`` on the float32 folder.

Each engine runs in its own subprocess, ``asr.bench.sherpa_engine``, ``asr.bench.onnx_engine`` or
``asr.bench.torch_engine``, which loads only that engine's stack (its peak RSS is its own: sherpa-onnx's
process loads no torch; sherpa-onnx's contract errors cannot kill the benchmark); the live-microphone
session they share is ``asr.bench.live``. Every utterance is one live-microphone session, replayed on a virtual
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

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from asr.audio import read_audio
from asr.bench import json_process
from asr.checkpoint import load_model
from asr.data.librispeech import test_set
from asr.errors import UserError
from asr.fileio import atomic_write, read_json_object, update_json, write_text_atomic
from asr.frontend import SAMPLE_RATE_HZ
from asr.metrics import word_errors
from export.int8 import FLAVOURS
from export.onnx import read_metadata

SPEECH_FLOOR_DB = 35.0  # a 10 ms frame this far below the loudest one counts as silence
JSON_KEYS = ("engine", "rtf_1thread", "rtf_2threads", "wer", "bytes", "first_token_ms_p50", "upl_ms_p50", "upl_ms_p95")


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
    for flavour in FLAVOURS:
        if (model_dir / f"int8-{flavour}" / "encoder.onnx").is_file():
            found.append((f"onnx-int8-{flavour}", model_dir / f"int8-{flavour}"))
    found.append(("sherpa-onnx-fp32", model_dir))
    return found


def _run_child(engine: str, d: Path, files_list: Path, checkpoint, chunk_feature_frames, method, beam, threads,
               max_silence) -> dict:
    """One engine in its own process, which loads only that engine's stack."""
    module = {"sherpa-onnx-fp32": "asr.bench.sherpa_engine", "pytorch-fp32": "asr.bench.torch_engine"}.get(
        engine, "asr.bench.onnx_engine")
    cmd = [sys.executable, "-m", module, engine, str(d), str(files_list), "--method", method,
           "--beam", str(beam), "--threads", str(threads), "--max-silence", str(max_silence)]
    if engine == "pytorch-fp32":
        cmd += ["--checkpoint", checkpoint, "--chunk-feature-frames", str(chunk_feature_frames)]
    return json_process(cmd, f"{engine} on {d}: the benchmark process", {**os.environ, "OMP_NUM_THREADS": str(threads)})


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
    files, refs = test_set(data, max_utts)
    chosen = _engines(d, checkpoint)
    if engines:
        unknown = sorted(set(engines) - {e for e, _ in chosen})
        if unknown:
            raise UserError(f"--engines {' '.join(unknown)}: not available here; choose from {', '.join(e for e, _ in chosen)}")
        chosen = [(e, p) for e, p in chosen if e in engines]
    chunk = read_metadata(d / "encoder.onnx")["decode_chunk_len"] if checkpoint else None  # PyTorch streams at it
    ends = {f: speech_end_s(read_audio(str(f))) for f in files}
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
                runs[n] = _run_child(engine, path, files_list, checkpoint, chunk, method, beam, n, max_silence_s)
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
                e, n = word_errors(refs[f.stem], t["text"])
                errs, words = errs + e, words + n
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
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


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
    if args.results_json:
        read_json_object(args.results_json)  # a bad results file: refused before the benchmark, not after
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

