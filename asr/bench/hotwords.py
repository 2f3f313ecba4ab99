"""``asr bench hotwords``: hotwords (contextual biasing, ``asr.decoding.context_graph``) on the synth test split: recall of
entity words and WER without and with a hotwords file, with our onnxruntime streaming decoder, and
its tokens checked against sherpa-onnx's ``--hotwords-file`` on the first utterances.

    asr export --checkpoint exp/demo/final.pt --out exp/demo/onnx
    asr bench hotwords --model-dir exp/demo/onnx --audio-dir data/synth-small/test --max-utts 1000

Hotwords: every contact, artist, song, city and app of the synth assets (``asr.data.synth.load_assets``),
one phrase per line, whether or not it occurs in the split (a biasing list with distractors, like a
user's contact list), at each ``--scores`` value per token (sherpa-onnx's default is 1.5). Entity words of an
utterance: the words of those phrases found in its transcript, less the words the templates use
(carrier words such as THE, OF, MY). "Missed" utterances: those with an entity word absent from the
hypothesis decoded without hotwords; entity recall is measured there without and with hotwords, plus
over all utterances, plus WER over all utterances (hotwords must not wreck the rest). Rows "+ finalize"
take back unfinished partial matches after the last frame (``finalize_context``), which icefall does
and sherpa-onnx's online recognizer does not. Modified beam search, one thread. Prints a markdown
table and one ``key=value`` line (``@score`` suffixes).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from asr.audio import read_audio
from asr.bench import json_process
from asr.data.librispeech import test_set
from asr.data.synth import load_assets
from asr.decoding.context_graph import load_hotwords
from asr.decoding.search import finalize_context
from asr.metrics import word_errors
from asr.streaming.onnx import OnnxStream, OnnxTransducer
from asr.tokenizer import Tokenizer, write_bpe_vocab

ENTITY_SLOTS = ("contact", "artist", "song", "city", "app")  # names, places, titles


def entity_phrases() -> tuple[list[str], set[str]]:
    """(uppercase entity phrases of ``ENTITY_SLOTS``, uppercase words the templates use)."""
    assets = load_assets()
    phrases = sorted({v.upper() for slot in ENTITY_SLOTS for v in assets.entities[slot]})
    carrier = {w.upper() for t in assets.templates for w in t.text.split() if "{" not in w}
    return phrases, carrier


def entity_words(text: str, phrases: list[str], carrier: set[str]) -> set[str]:
    """Words of the entity phrases that occur (as whole words) in ``text``, less carrier words."""
    padded = f" {text} "
    return {w for p in phrases if f" {p} " in padded for w in p.split()} - carrier


def decode(model, files, context_graph, beam: int) -> tuple[list[list[int]], list[list[int]]]:
    """Tokens per file from :class:`OnnxStream` (hotwords when ``context_graph`` is given), as
    sherpa-onnx's online recognizer gives them and after ``finalize_context``."""
    online, finalized = [], []
    for f in files:
        stream = OnnxStream(model, "modified_beam_search", beam, context_graph=context_graph)
        x = read_audio(str(f))
        stream.accept_waveform(x)
        stream.input_finished()
        online.append(stream.tokens)
        finalized.append(finalize_context(stream.search_state).hyps[0])  # one segment: no endpointing
    return online, finalized


def run(a) -> None:
    torch.set_num_threads(1)
    model_dir = Path(a.model_dir)
    files, refs = test_set(a.audio_dir, a.max_utts or None)
    phrases, carrier = entity_phrases()
    tokenizer = Tokenizer(model_dir / "bpe.model")
    model = OnnxTransducer(model_dir, num_threads=1)
    with tempfile.TemporaryDirectory(prefix="hotwords-") as tmp_name:  # the phrases and vocabulary both engines read
        tmp = Path(tmp_name)
        hotwords = tmp / "hotwords.txt"
        hotwords.write_text("".join(f"{phrase}\n" for phrase in phrases), encoding="utf-8")
        write_bpe_vocab(model_dir / "bpe.model", tmp / "bpe.vocab")

        t0 = time.perf_counter()
        hyps = {"none": decode(model, files, None, a.beam)[0]}
        seconds = {"none": time.perf_counter() - t0}
        match = {}
        for score in a.scores:
            graph = load_hotwords(hotwords, tokenizer.encode_max_score, default_score=score, unk_id=tokenizer.sp.unk_id())
            t0 = time.perf_counter()
            hyps[score], hyps[(score, "finalize")] = decode(model, files, graph, a.beam)
            seconds[score] = seconds[(score, "finalize")] = time.perf_counter() - t0
            match[score] = "skipped"
            if a.sherpa_utts:
                check = files[: a.sherpa_utts]
                theirs = json_process([sys.executable, "-m", "asr.bench.sherpa_client", str(model_dir), "modified_beam_search",
                                       "--beam", str(a.beam), "--threads", "1", "--hotwords-file", str(hotwords),
                                       "--hotwords-score", str(score), "--modeling-unit", "bpe", "--bpe-vocab",
                                       str(tmp / "bpe.vocab"), *map(str, check)], f"sherpa-onnx on {model_dir}")["tokens"]
                ours = [model.sherpa_symbols(h) for h in hyps[score][: len(check)]]
                match[score] = f"{sum(x == y for x, y in zip(ours, theirs))}/{len(check)}"

    texts = {k: [model.text(h) for h in v] for k, v in hyps.items()}
    wanted = [entity_words(refs[f.stem], phrases, carrier) for f in files]
    missed = [i for i, words in enumerate(wanted) if words - set(texts["none"][i].split())]
    n_all, n_missed = sum(len(w) for w in wanted), sum(len(wanted[i]) for i in missed)
    ref_words = sum(len(refs[f.stem].split()) for f in files)
    print(f"{len(files)} utterances, {ref_words} words; {n_all} entity words; {len(missed)} utterances with "
          f"{n_missed} entity words missed without hotwords; {len(phrases)} hotword phrases\n")
    print("| hotwords | WER % | entity-word recall %, all | entity-word recall %, missed utts | decode s |")
    print("|---|---|---|---|---|")
    stats = {}
    for key, text in texts.items():
        errs = sum(word_errors(refs[f.stem], h)[0] for f, h in zip(files, text))
        found_all = sum(len(w & set(h.split())) for w, h in zip(wanted, text))
        found_missed = sum(len(wanted[i] & set(text[i].split())) for i in missed)
        stats[key] = (100 * errs / ref_words, 100 * found_all / max(n_all, 1), 100 * found_missed / max(n_missed, 1))
        label = "none" if key == "none" else (f"{key:g}/token" if not isinstance(key, tuple) else f"{key[0]:g}/token + finalize")
        print(f"| {label} | {stats[key][0]:.2f} | {stats[key][1]:.1f} | {stats[key][2]:.1f} | {seconds[key]:.0f} |")
    wer0, all0, miss0 = stats["none"]
    summary = [f"utts={len(files)} phrases={len(phrases)} missed_utts={len(missed)} missed_words={n_missed}"]
    for score in a.scores:
        (wer1, all1, miss1), (wer2, _, _) = stats[score], stats[(score, "finalize")]
        summary.append(f"recall_missed@{score:g}={miss0:.1f}->{miss1:.1f} recall_all@{score:g}={all0:.1f}->{all1:.1f} "
                       f"wer@{score:g}={wer0:.2f}->{wer1:.2f} wer_finalize@{score:g}={wer2:.2f} "
                       f"sherpa_tokens_match@{score:g}={match[score]}")
    print("\n" + " ".join(summary))
