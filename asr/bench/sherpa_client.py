"""Decode audio files with the PyPI sherpa-onnx ``OnlineRecognizer``: the external client our exports
are checked against. Run it in a subprocess (a model that breaks sherpa-onnx's contract kills the
process instead of raising):

    python -m asr.bench.sherpa_client MODEL_DIR greedy_search|modified_beam_search [--beam 4]
        [--threads 1] [--batch] [--hotwords-file F [--hotwords-score 1.5] --modeling-unit bpe
        --bpe-vocab MODEL_DIR/bpe.vocab] FILE...

prints one JSON object: ``tokens`` (per file, the symbols sherpa-onnx reports, ``▁`` shown as a
space), ``audio_s`` and ``compute_s`` (decoding only, model loading excluded). Each file gets 0.66 s
of trailing zeros before ``input_finished`` (sherpa-onnx never decodes the last partial chunk).
``--batch`` decodes all files as parallel streams with ``decode_streams``.

Hotwords (modified beam search only) go to sherpa-onnx as they are. For our BPE models use
``--modeling-unit bpe`` with a ``.vocab`` file from ``asr.tokenizer.write_bpe_vocab``: sherpa-onnx's
default ``cjkchar`` splits a piece such as ``▁T`` into ``▁`` and ``T``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import sherpa_onnx

from asr.audio import read_audio
from asr.chunking import TAIL_PADDING_S
from asr.frontend import DITHER, HIGH_FREQ_HZ, LOW_FREQ_HZ, NUM_MEL_BINS, SAMPLE_RATE_HZ


def sherpa_recognizer(model_dir: str | Path, threads: int, decoding_method: str, beam: int,
                      **options) -> sherpa_onnx.OnlineRecognizer:
    """sherpa-onnx's OnlineRecognizer on an exported folder, with our front end's numbers;
    ``decoding_method`` is sherpa-onnx's name (``greedy_search`` or ``modified_beam_search``),
    ``options`` its other keywords (hotwords, endpoint rules)."""
    d = Path(model_dir)
    return sherpa_onnx.OnlineRecognizer.from_transducer(
        tokens=str(d / "tokens.txt"), encoder=str(d / "encoder.onnx"), decoder=str(d / "decoder.onnx"),
        joiner=str(d / "joiner.onnx"), num_threads=threads, sample_rate=SAMPLE_RATE_HZ, feature_dim=NUM_MEL_BINS,
        low_freq=LOW_FREQ_HZ, high_freq=HIGH_FREQ_HZ, dither=DITHER, decoding_method=decoding_method,
        max_active_paths=beam, **options)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("method", choices=["greedy_search", "modified_beam_search"])
    p.add_argument("files", nargs="+")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", action="store_true")
    # Defaults are sherpa-onnx's own, so leaving them out changes nothing.
    p.add_argument("--hotwords-file", default="", help="one phrase per line, optionally followed by ':SCORE'")
    p.add_argument("--hotwords-score", type=float, default=1.5, help="per-token bonus of phrases without a score")
    p.add_argument("--modeling-unit", default="cjkchar", choices=["cjkchar", "bpe", "cjkchar+bpe"],
                   help="how sherpa-onnx splits hotwords into tokens; 'bpe' for our models")
    p.add_argument("--bpe-vocab", default="", help="sentencepiece .vocab file (asr.tokenizer.write_bpe_vocab), for --modeling-unit bpe")
    a = p.parse_args()
    if a.hotwords_file and a.modeling_unit != "cjkchar" and not a.bpe_vocab:
        p.error(f"--modeling-unit {a.modeling_unit} needs --bpe-vocab (write it with asr.tokenizer.write_bpe_vocab)")
    rec = sherpa_recognizer(a.model_dir, a.threads, a.method, a.beam, hotwords_file=a.hotwords_file,
                            hotwords_score=a.hotwords_score, modeling_unit=a.modeling_unit, bpe_vocab=a.bpe_vocab)
    audio = [(read_audio(f), SAMPLE_RATE_HZ) for f in a.files]
    t0 = time.perf_counter()
    streams = []
    for x, sr in audio:
        s = rec.create_stream()
        s.accept_waveform(sr, x)
        s.accept_waveform(sr, np.zeros(int(TAIL_PADDING_S * sr), np.float32))
        s.input_finished()
        if not a.batch:
            while rec.is_ready(s):
                rec.decode_stream(s)
        streams.append(s)
    while a.batch and any(rec.is_ready(s) for s in streams):
        rec.decode_streams([s for s in streams if rec.is_ready(s)])
    compute_s = time.perf_counter() - t0
    print(json.dumps({"tokens": [rec.get_result_all(s).tokens for s in streams], "compute_s": compute_s,
                      "audio_s": sum(len(x) / sr for x, sr in audio)}))


if __name__ == "__main__":
    main()
