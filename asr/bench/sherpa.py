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

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from asr.audio import read_audio
from asr.data.librispeech import read_transcripts
from asr.errors import UserError
from asr.frontend import SAMPLE_RATE_HZ
from asr.metrics import word_errors
from asr.streaming.onnx import OnnxStream, OnnxTransducer



def ours(model_dir: str, method: str, beam: int, files: list[Path], threads: int):
    torch.set_num_threads(threads)
    model = OnnxTransducer(model_dir, num_threads=threads)
    audio = [read_audio(str(f)) for f in files]
    t0 = time.perf_counter()
    results = []
    for x in audio:
        s = OnnxStream(model, "greedy" if method == "greedy_search" else method, beam)
        s.accept_waveform(x)
        s.input_finished()
        results.append(s.tokens)
    compute = time.perf_counter() - t0
    symbols = [[model.symbols[t].replace("\u2581", " ") for t in r] for r in results]
    texts = [model.text(r) for r in results]
    return symbols, texts, compute, sum(len(x) for x in audio) / SAMPLE_RATE_HZ



def run(a) -> None:
    refs = read_transcripts(Path(a.audio_dir))
    files = sorted(Path(a.audio_dir).rglob("*.flac"))[: a.max_utts or None]
    if not files:
        raise UserError(f"{a.audio_dir}: no .flac files; pass a LibriSpeech-layout folder such as data/synth-small/test")
    summary = []
    print("| engine | method | utts | WER % | RTF |\n|---|---|---|---|---|")
    for method in a.methods:
        r = subprocess.run([sys.executable, "-m", "asr.bench.sherpa_client", a.model_dir, method, "--beam", str(a.beam),
                            "--threads", str(a.threads), *map(str, files)], capture_output=True, text=True)
        if r.returncode:
            last = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
            raise UserError(f"sherpa-onnx on {a.model_dir} failed ({last[:300]})")
        theirs = json.loads(r.stdout)
        mine, texts, compute, audio_s = ours(a.model_dir, method, a.beam, files, a.threads)
        sherpa_texts = ["".join(t).strip() for t in theirs["tokens"]]
        for engine, hyp, rtf in (("asr.streaming.onnx", texts, compute / audio_s),
                                 ("sherpa-onnx 2.0.1", sherpa_texts, theirs["compute_s"] / theirs["audio_s"])):
            errs = words = 0
            for f, h in zip(files, hyp):
                e, n = word_errors(refs[f.stem], h)
                errs, words = errs + e, words + n
            print(f"| {engine} | {method}{'' if method == 'greedy_search' else f', beam {a.beam}'} | {len(files)} | "
                  f"{100 * errs / words:.2f} | {rtf:.4f} |")
        same = sum(x == y for x, y in zip(mine, theirs["tokens"]))
        ours_rtf, sherpa_rtf = compute / audio_s, theirs["compute_s"] / theirs["audio_s"]
        summary.append(f"{method}: sherpa_tokens_match={same}/{len(files)} stream_rtf={ours_rtf:.4f} "
                       f"sherpa_rtf={sherpa_rtf:.4f} ratio={ours_rtf / sherpa_rtf:.2f}")
    print("\n".join(summary))
