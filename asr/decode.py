"""Decode a cut manifest with a checkpoint (``asr decode``) and score it, icefall style.

Writes into ``out_dir``: ``recogs-<tag>.txt`` (``id ref=... hyp=...``), ``errs-<tag>.txt``
(WER summary, then per-utterance alignments with errors marked ``(ref->hyp)``, errors first) and
``wer-<tag>.txt`` (one line). Decode RTF = decoding wall time / audio duration, features cached. With
``delay_reference`` (a checkpoint of a model that sees the whole utterance; every encoder is run with
full context) it also reports the symbol delay: the mean frame at which the search emits a token
minus the frame of that token in the reference model's forced alignment (``asr.decoding.align``), in ms.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from lhotse.dataset import SimpleCutSampler

from asr.checkpoint import checkpoint_tokenizer, load_model
from asr.chunking import ENCODER_FRAME_MS
from asr.data.dataset import collate, load_cuts
from asr.decoding.align import forced_align, symbol_delay
from asr.decoding.search import search
from asr.errors import UserError
from asr.features import fbank
from asr.fileio import write_text_atomic
from asr.metrics import alignment, word_errors


@dataclass
class DecodeResult:
    wer: float  # percent
    errors: int
    words: int
    rtf: float
    num_utts: int
    params: int
    train_minutes: float
    method: str
    beam: int
    symbol_delay_ms: float | None = None  # with a delay reference only
    part: str = "test"  # the decoded set, from the cut manifest's name: cuts_<part>.jsonl.gz
    audio_s: float = 0.0

    @property
    def search_label(self) -> str:
        return self.method if self.method == "greedy" else f"{self.method}, beam {self.beam}"

    @property
    def key(self) -> str:
        """The part as a results key: ``test-open`` -> ``test_open`` (its WER is ``test_open_wer``)."""
        return self.part.replace("-", "_")


def table(results: list[DecodeResult], checkpoint: str) -> str:
    """A markdown table, one row per decoded set, for the checkpoint."""
    delayed = any(r.symbol_delay_ms is not None for r in results)
    rows = ["| checkpoint | set | method | utts | WER % | params | train min | decode RTF |" + (" symbol delay ms |" if delayed else ""),
            "|---|---|---|---|---|---|---|---|" + ("---|" if delayed else "")]
    for r in results:
        delay = "" if not delayed else " - |" if r.symbol_delay_ms is None else f" {r.symbol_delay_ms:.1f} |"
        rows.append(f"| {checkpoint} | {r.part} | {r.search_label} | {r.num_utts} | {r.wer:.2f} | {r.params / 1e6:.2f} M | "
                    f"{r.train_minutes:.1f} | {r.rtf:.4f} |" + delay)
    return "\n".join(rows)


def results_values(results: list[DecodeResult]) -> dict:
    """The keys ``asr decode --results-json`` merges into a results file: ``<part>_wer`` (and
    ``<part>_symbol_delay_ms``) per set; params, train minutes, search; the decode RTF over all sets."""
    first = results[0]
    values = {"params": first.params, "train_minutes": round(first.train_minutes, 2), "decode_method": first.method,
              "decode_rtf": round(sum(r.rtf * r.audio_s for r in results) / max(sum(r.audio_s for r in results), 1e-9), 5)}
    if first.method != "greedy":
        values["decode_beam"] = first.beam
    for r in results:
        values[f"{r.key}_wer"] = round(r.wer, 3)
        if r.symbol_delay_ms is not None:
            values[f"{r.key}_symbol_delay_ms"] = round(r.symbol_delay_ms, 1)
    return values


def set_name(cuts_path: str) -> str:
    """The decoded set a cut manifest holds, from its name: ``.../cuts_test-open.jsonl.gz`` -> ``test-open``."""
    return Path(cuts_path).name.split(".")[0].removeprefix("cuts_")


def decode(checkpoint: str, cuts_path: str, out_dir: str, method: str = "greedy", beam: int = 4,
           max_duration_s: float = 300.0, bpe_model: str | None = None, tag: str | None = None,
           delay_reference: str | None = None) -> DecodeResult:
    model, cfg, ckpt = load_model(checkpoint)
    tokenizer = checkpoint_tokenizer(ckpt, cfg, checkpoint, bpe_model)
    ref_model = None
    if delay_reference:
        ref_model, ref_cfg, _ = load_model(delay_reference)
        if ref_cfg.model.vocab_size != cfg.model.vocab_size:
            raise UserError(f"{delay_reference}: vocabulary {ref_cfg.model.vocab_size} differs from {checkpoint}'s "
                            f"{cfg.model.vocab_size}; the delay reference must use the same tokenizer")
    result = decode_model(model, tokenizer, cuts_path, out_dir, method, beam, max_duration_s, tag, ref_model)
    result.params, result.train_minutes = ckpt.get("params", 0), ckpt.get("train_seconds", 0.0) / 60
    return result


def decode_model(model, tokenizer, cuts_path: str, out_dir: str, method: str = "greedy", beam: int = 4,
                 max_duration_s: float = 300.0, tag: str | None = None, delay_reference=None) -> DecodeResult:
    """Decode and score with any model that implements ``asr.decoding.search.SearchModel`` and
    ``encode(x, x_lens)``: a ``Transducer`` or the emulated NNA (``export.nna.NNATransducer``).
    ``delay_reference``: a model whose full-context forced alignment the symbol delay is measured against."""
    cuts = load_cuts(cuts_path)
    delay_sum, delay_count = 0.0, 0
    part = set_name(cuts_path)
    tag = tag or f"{part}-{method}"
    rows, errors, words, audio_s, compute_s = [], 0, 0, 0.0, 0.0
    for cut_batch in SimpleCutSampler(cuts, max_duration=max_duration_s):
        batch = collate(cut_batch, tokenizer)
        audio_s += sum(c.duration for c in cut_batch)
        t0 = time.perf_counter()
        with torch.no_grad():
            enc, enc_lens = model.encode(batch["x"], batch["x_lens"])
            result = search(model, enc, enc_lens, method, beam)
            hyps = result.hyps
        compute_s += time.perf_counter() - t0
        if delay_reference is not None:
            refs = [tokenizer.encode(t) for t in batch["texts"]]
            ref_frames = forced_align(delay_reference, batch["x"], batch["x_lens"], refs)
            d, count = symbol_delay(hyps, result.timestamps, refs, ref_frames)
            if count:
                delay_sum, delay_count = delay_sum + d * count, delay_count + count
        for uid, ref, hyp_ids in zip(batch["ids"], batch["texts"], hyps):
            hyp = tokenizer.decode(hyp_ids)
            e, n = word_errors(ref, hyp)
            errors, words = errors + e, words + n
            rows.append((uid, ref, hyp, e, n))
    wer = 100.0 * errors / max(words, 1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = f"%WER {wer:.2f} [ {errors} / {words} ], {len(rows)} utterances, {method}"
    write_text_atomic(out / f"recogs-{tag}.txt", "".join(f"{u}:\tref={r}\n{u}:\thyp={h}\n" for u, r, h, _, _ in rows))
    by_errors = sorted(rows, key=lambda row: (-row[3], row[0]))
    write_text_atomic(out / f"errs-{tag}.txt", summary + "\n\nPER-UTT DETAILS: errors / words  ref->hyp alignment\n"
           + "".join(f"{u}\t{e}/{n}\t{alignment(r, h)}\n" for u, r, h, e, n in by_errors))
    delay_ms = ENCODER_FRAME_MS * delay_sum / delay_count if delay_count else None
    delay_note = "" if delay_ms is None else f", symbol delay {delay_ms:.1f} ms over {delay_count} tokens"
    write_text_atomic(out / f"wer-{tag}.txt", summary + delay_note + "\n")
    return DecodeResult(wer, errors, words, compute_s / max(audio_s, 1e-9), len(rows), 0, 0.0, method, beam, delay_ms,
                        part, audio_s)


@torch.no_grad()
def transcribe(model, tokenizer, samples: torch.Tensor, method: str = "greedy", beam: int = 4) -> str:
    """The text of a whole recording ((S,) samples at 16 kHz), decoded offline."""
    x = fbank(samples).unsqueeze(0)
    enc, enc_lens = model.encode(x, torch.tensor([x.size(1)]))
    return tokenizer.decode(search(model, enc, enc_lens, method, beam).hyps[0])
