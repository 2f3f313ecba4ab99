"""``asr bench ancat``: WER beside look-ahead, for ANCAT models, fixed-chunk Conformers and full-context
models on one test set (offline decoding; the look-ahead is what streaming would wait for).

    asr bench ancat --checkpoints exp/ancat-0.05/final.pt exp/conformer-c8/final.pt exp/full/final.pt \\
        --reference exp/full/final.pt --cuts data/fbank/synth-small/cuts_test-open.jsonl.gz --json exp/ancat/results.json

Per checkpoint, a row: ``model`` (``ancat``, ``fixed`` or ``full``; ``causal`` for encoders that never
look ahead), ``setting`` (the latency weight; the chunk in encoder frames), greedy ``wer``, and:

* **algorithmic look-ahead** of every output frame, in ms: the future input it waits for, plus the
  subsampling's 50 ms. ANCAT: its compounded look-ahead ``D_t`` x 40 ms (``asr.models.ancat``); a
  fixed chunk of C frames: a frame waits for its chunk's end, ``C - 1 - (t mod C)`` frames; full
  context: the utterance's end. ``lookahead_ms_mean`` and ``lookahead_ms_p90`` over all frames.
* **emission delay** (``--reference``): for each token of the hypothesis paired with the same token of
  the reference's forced alignment (``asr.decoding.align``, which runs every encoder in full context:
  pass a model that knows it, e.g. a Conformer trained with chunk 0 among its chunks), the time at which
  streaming could emit it, ``(f + lookahead(f) + 1) x 40 ms + 50 ms``, less the end of its frame in the
  reference alignment, ``(f_ref + 1) x 40 ms``; the mean over tokens.
"""

from __future__ import annotations

import json

import kaldialign
import numpy as np
import torch
from lhotse.dataset import SimpleCutSampler

from asr.checkpoint import checkpoint_tokenizer, load_model
from asr.chunking import ENCODER_FRAME_MS, FEATURE_FRAME_MS, OVERLAP_FEATURE_FRAMES
from asr.data.dataset import collate, load_cuts
from asr.decoding.align import forced_align
from asr.decoding.search import greedy_search
from asr.fileio import write_text_atomic
from asr.metrics import word_errors
from asr.models.ancat import AncatEncoder
from asr.models.conformer import ConformerEncoder

SUBSAMPLING_LOOKAHEAD_MS = OVERLAP_FEATURE_FRAMES * FEATURE_FRAME_MS  # 50: the last encoder frame's future feature frames

def frame_lookahead(encoder, lens: torch.Tensor, t: int) -> tuple[np.ndarray, str, str]:
    """(N, T') future encoder frames each output frame waits for after the last forward, the model's kind
    and its setting."""
    idx = np.arange(t)[None, :]
    ends = lens.numpy()[:, None]
    if isinstance(encoder, AncatEncoder):
        return encoder.lookahead.detach().numpy(), "ancat", f"lambda={encoder.cfg.latency_weight:g}"
    if isinstance(encoder, ConformerEncoder):
        chunk = encoder.cfg.chunk_encoder_frames
        if chunk == 0:
            return np.maximum(ends - 1 - idx, 0), "full", "full"
        chunk_end = np.minimum(idx // chunk * chunk + chunk, ends) - 1
        return np.maximum(chunk_end - idx, 0), "fixed", f"chunk={chunk}"
    return np.zeros((len(lens), t)), "causal", "causal"


@torch.no_grad()
def measure(checkpoint: str, cuts, reference, max_duration_s: float) -> dict:
    model, cfg, ckpt = load_model(checkpoint)
    tokenizer = checkpoint_tokenizer(ckpt, cfg, checkpoint)
    errors = words = 0
    lookaheads, delays = [], []
    kind = setting = None
    for cut_batch in SimpleCutSampler(cuts, max_duration=max_duration_s):
        batch = collate(cut_batch, tokenizer)
        enc, lens = model.encoder(batch["x"], batch["x_lens"])
        la, kind, setting = frame_lookahead(model.encoder, lens, enc.size(1))
        result = greedy_search(model, model.project_encoder_out(enc), lens)
        for n, (text, hyp) in enumerate(zip(batch["texts"], result.hyps)):
            e, w = word_errors(text, tokenizer.decode(hyp))
            errors, words = errors + e, words + w
            lookaheads.append(la[n, : int(lens[n])])
        if reference is not None:
            refs = [tokenizer.encode(t) for t in batch["texts"]]
            ref_frames = forced_align(reference, batch["x"], batch["x_lens"], refs)
            for n, (h, hf, r, rf) in enumerate(zip(result.hyps, result.timestamps, refs, ref_frames)):
                if not rf:
                    continue
                for hi, ri in _paired(h, r):
                    f = hf[hi]
                    emit = (f + la[n, f] + 1) * ENCODER_FRAME_MS + SUBSAMPLING_LOOKAHEAD_MS
                    delays.append(emit - (rf[ri] + 1) * ENCODER_FRAME_MS)
    frames_ms = np.concatenate(lookaheads) * ENCODER_FRAME_MS + SUBSAMPLING_LOOKAHEAD_MS
    return {"model": kind, "setting": setting, "checkpoint": checkpoint, "wer": round(100.0 * errors / max(words, 1), 2),
            "lookahead_ms_mean": round(float(frames_ms.mean()), 1), "lookahead_ms_p90": round(float(np.percentile(frames_ms, 90)), 1),
            "emission_delay_ms": round(float(np.mean(delays)), 1) if delays else None, "utterances": len(lookaheads)}


def _paired(hyp: list[int], ref: list[int]) -> list[tuple[int, int]]:
    """(hypothesis index, reference index) of the equal tokens an edit-distance alignment pairs."""
    out, hi, ri = [], 0, 0
    for a, b in kaldialign.align(ref, hyp, -1):
        if a != -1 and b != -1:
            if a == b:
                out.append((hi, ri))
            hi, ri = hi + 1, ri + 1
        elif a == -1:
            hi += 1
        else:
            ri += 1
    return out


def run(a) -> None:
    torch.set_num_threads(a.threads)
    cuts = load_cuts(a.cuts)
    if a.max_utts:
        cuts = cuts.subset(first=a.max_utts)
    reference = load_model(a.reference)[0] if a.reference else None
    rows = [measure(c, cuts, reference, a.max_duration) for c in a.checkpoints]
    print("\n| model | setting | WER % | look-ahead ms mean / P90 | emission delay ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        delay = "-" if r["emission_delay_ms"] is None else f"{r['emission_delay_ms']:.1f}"
        print(f"| {r['model']} | {r['setting']} | {r['wer']:.2f} | {r['lookahead_ms_mean']:.1f} / {r['lookahead_ms_p90']:.1f} "
              f"| {delay} |")
    if a.json:
        write_text_atomic(a.json, json.dumps(rows, indent=1) + "\n")
        print(f"wrote {a.json}")
