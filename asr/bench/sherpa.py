"""``asr bench sherpa``: our onnxruntime streaming decoder (``asr.streaming.onnx``) next to sherpa-onnx on
the same exported model, the same files and thread count, in one run: token agreement, WER and
real-time factor.

    asr export --checkpoint exp/demo/final.pt --out exp/demo/onnx
    asr bench sherpa --model-dir exp/demo/onnx --audio-dir data/synth-small/test --beam 8

``--audio-dir`` is a LibriSpeech-layout folder (flac + ``*.trans.txt``). Both decoders get each file
whole plus 0.66 s of trailing zeros and stream it chunk by chunk; RTF counts decoding only (model
loading and file reading excluded). Last line: ``sherpa_tokens_match=<utterances equal>/<utterances>
stream_rtf=<ours> sherpa_rtf=<theirs> ratio=<ours/theirs>`` per method.
"""

from __future__ import annotations

import sys
import time

import torch

from asr.audio import read_audio
from asr.bench import json_process
from asr.data.librispeech import test_set
from asr.frontend import SAMPLE_RATE_HZ
from asr.metrics import word_errors
from asr.streaming.onnx import OnnxStream, OnnxTransducer


def ours(model: OnnxTransducer, audio: list, method: str, beam: int) -> tuple[list[list[str]], list[str], float]:
    """Our recognizer on each (S,) float array alone: (sherpa-style symbols, texts, compute seconds)."""
    t0 = time.perf_counter()
    results = []
    for x in audio:
        s = OnnxStream(model, "greedy" if method == "greedy_search" else method, beam)
        s.accept_waveform(x)
        s.input_finished()
        results.append(s.tokens)
    compute = time.perf_counter() - t0
    return [model.sherpa_symbols(r) for r in results], [model.text(r) for r in results], compute


def run(a) -> None:
    files, refs = test_set(a.audio_dir, a.max_utts or None)
    torch.set_num_threads(a.threads)
    model = OnnxTransducer(a.model_dir, num_threads=a.threads)
    audio = [read_audio(str(f)) for f in files]
    audio_s = sum(len(x) for x in audio) / SAMPLE_RATE_HZ
    summary = []
    print("| engine | method | utts | WER % | RTF |\n|---|---|---|---|---|")
    for method in a.methods:
        theirs = json_process([sys.executable, "-m", "asr.bench.sherpa_client", a.model_dir, method, "--beam", str(a.beam),
                               "--threads", str(a.threads), *map(str, files)], f"sherpa-onnx on {a.model_dir}")
        mine, texts, compute = ours(model, audio, method, a.beam)
        ours_rtf, sherpa_rtf = compute / audio_s, theirs["compute_s"] / theirs["audio_s"]
        sherpa_texts = ["".join(t).strip() for t in theirs["tokens"]]
        for engine, hyp, rtf in (("asr.streaming.onnx", texts, ours_rtf), ("sherpa-onnx 2.0.1", sherpa_texts, sherpa_rtf)):
            errs = words = 0
            for f, h in zip(files, hyp):
                e, n = word_errors(refs[f.stem], h)
                errs, words = errs + e, words + n
            print(f"| {engine} | {method}{'' if method == 'greedy_search' else f', beam {a.beam}'} | {len(files)} | "
                  f"{100 * errs / words:.2f} | {rtf:.4f} |")
        same = sum(x == y for x, y in zip(mine, theirs["tokens"]))
        summary.append(f"{method}: sherpa_tokens_match={same}/{len(files)} stream_rtf={ours_rtf:.4f} "
                       f"sherpa_rtf={sherpa_rtf:.4f} ratio={ours_rtf / sherpa_rtf:.2f}")
    print("\n".join(summary))
