"""Decode a cut manifest with a checkpoint (``asr decode``) and score it, icefall style.

Writes into ``out_dir``: ``recogs-<tag>.txt`` (``id ref=... hyp=...``), ``errs-<tag>.txt``
(WER summary, then per-utterance alignments with errors marked ``(ref->hyp)``, errors first) and
``wer-<tag>.txt`` (one line). Decode RTF = decoding wall time / audio duration, features cached. With
``delay_reference`` (a checkpoint of a model that sees the whole utterance; every encoder is run with
full context) it also reports the symbol delay: the mean frame at which the search emits a token
minus the frame of that token in the reference model's forced alignment (``asr.decoding.align``), in ms.

With ``bias_lists`` (a file of per-utterance bias lists in fbai-speech's format, ``asr.data.bias_lists``)
each utterance is decoded with its own list if the model has a biasing adapter (``model.biasing``), and
scored as Le et al. score it (``asr.metrics.biased_word_errors``): WER, U-WER and B-WER from their
alignment, reported beside the usual WER. A model without an adapter is only scored (the no-biasing
baseline of the same lists).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from lhotse.dataset import SimpleCutSampler

from asr.checkpoint import checkpoint_tokenizer, load_model
from asr.chunking import ENCODER_FRAME_MS
from asr.data.bias_lists import BiasEntry, read_lists
from asr.data.dataset import collate, load_cuts
from asr.decoding.align import forced_align, symbol_delay
from asr.decoding.ngram_lm import LmFusion
from asr.decoding.search import search
from asr.errors import UserError
from asr.features import fbank
from asr.fileio import write_text_atomic
from asr.metrics import ErrorCounts, alignment, biased_word_errors, word_errors
from asr.models.transducer import BiasedModel


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
    # with bias lists: (all, unbiased, biased) errors as fbai-speech's score.py counts them, and whether
    # the model was biased with the lists (False: a model without an adapter, only scored)
    bias_scores: tuple[ErrorCounts, ErrorCounts, ErrorCounts] | None = None
    biased: bool = False
    lm_order: int | None = None  # shallow fusion with an n-gram model of this order, at lm_scale
    lm_scale: float | None = None

    @property
    def search_label(self) -> str:
        label = self.method if self.method == "greedy" else f"{self.method}, beam {self.beam}"
        return label if self.lm_order is None else f"{label}, {self.lm_order}-gram LM x {self.lm_scale:g}"

    @property
    def key(self) -> str:
        """The part as a results key: ``test-open`` -> ``test_open`` (its WER is ``test_open_wer``)."""
        return self.part.replace("-", "_")


def table(results: list[DecodeResult], checkpoint: str) -> str:
    """A markdown table, one row per decoded set, for the checkpoint."""
    delayed = any(r.symbol_delay_ms is not None for r in results)
    scored = any(r.bias_scores is not None for r in results)
    rows = ["| checkpoint | set | method | utts | WER % | params | train min | decode RTF |" + (" symbol delay ms |" if delayed else "")
            + (" biased | U-WER % | B-WER % |" if scored else ""),
            "|---|---|---|---|---|---|---|---|" + ("---|" if delayed else "") + ("---|---|---|" if scored else "")]
    for r in results:
        delay = "" if not delayed else " - |" if r.symbol_delay_ms is None else f" {r.symbol_delay_ms:.1f} |"
        bias = "" if not scored else " - | - | - |" if r.bias_scores is None else (
            f" {'yes' if r.biased else 'no'} | {r.bias_scores[1].rate:.2f} | {r.bias_scores[2].rate:.2f} |")
        rows.append(f"| {checkpoint} | {r.part} | {r.search_label} | {r.num_utts} | {r.wer:.2f} | {r.params / 1e6:.2f} M | "
                    f"{r.train_minutes:.1f} | {r.rtf:.4f} |" + delay + bias)
    return "\n".join(rows)


def results_values(results: list[DecodeResult]) -> dict:
    """The keys ``asr decode --results-json`` merges into a results file: ``<part>_wer`` (and
    ``<part>_symbol_delay_ms``) per set; params, train minutes, search; the decode RTF over all sets."""
    first = results[0]
    values = {"params": first.params, "train_minutes": round(first.train_minutes, 2), "decode_method": first.method,
              "decode_rtf": round(sum(r.rtf * r.audio_s for r in results) / max(sum(r.audio_s for r in results), 1e-9), 5)}
    if first.method != "greedy":
        values["decode_beam"] = first.beam
    if first.lm_order is not None:
        values["decode_lm_order"], values["decode_lm_scale"] = first.lm_order, first.lm_scale
    for r in results:
        values[f"{r.key}_wer"] = round(r.wer, 3)
        if r.bias_scores is not None:
            for name, counts in zip(("scored_wer", "u_wer", "b_wer"), r.bias_scores):
                values[f"{r.key}_{name}"] = round(counts.rate, 3)
            values[f"{r.key}_bias_recall"] = round(r.bias_scores[2].recall, 3)
        if r.symbol_delay_ms is not None:
            values[f"{r.key}_symbol_delay_ms"] = round(r.symbol_delay_ms, 1)
    return values


def set_name(cuts_path: str) -> str:
    """The decoded set a cut manifest holds, from its name: ``.../cuts_test-open.jsonl.gz`` -> ``test-open``."""
    return Path(cuts_path).name.split(".")[0].removeprefix("cuts_")


def decode(checkpoint: str, cuts_path: str, out_dir: str, method: str = "greedy", beam: int = 4,
           max_duration_s: float = 300.0, bpe_model: str | None = None, tag: str | None = None,
           delay_reference: str | None = None, bias_lists: str | None = None, lm: LmFusion | None = None) -> DecodeResult:
    model, cfg, ckpt = load_model(checkpoint)
    lists = {e.utt_id: e for e in read_lists(bias_lists)} if bias_lists else None
    tokenizer = checkpoint_tokenizer(ckpt, cfg, checkpoint, bpe_model)
    ref_model = None
    if delay_reference:
        ref_model, ref_cfg, _ = load_model(delay_reference)
        if ref_cfg.model.vocab_size != cfg.model.vocab_size:
            raise UserError(f"{delay_reference}: vocabulary {ref_cfg.model.vocab_size} differs from {checkpoint}'s "
                            f"{cfg.model.vocab_size}; the delay reference must use the same tokenizer")
    result = decode_model(model, tokenizer, cuts_path, out_dir, method, beam, max_duration_s, tag, ref_model, lists,
                          bias_lists or "", lm)
    result.params, result.train_minutes = ckpt.get("params", 0), ckpt.get("train_seconds", 0.0) / 60
    return result


def decode_model(model, tokenizer, cuts_path: str, out_dir: str, method: str = "greedy", beam: int = 4,
                 max_duration_s: float = 300.0, tag: str | None = None, delay_reference=None,
                 lists: dict[str, BiasEntry] | None = None, lists_path: str = "", lm: LmFusion | None = None) -> DecodeResult:
    """Decode and score with any model that implements ``asr.decoding.search.SearchModel`` and
    ``encode(x, x_lens)``: a ``Transducer`` or the emulated NNA (``export.nna.NNATransducer``).
    ``delay_reference``: a model whose full-context forced alignment the symbol delay is measured against.
    ``lists``: per-utterance bias lists by utterance id (``lists_path`` names their file in errors).
    ``lm``: shallow fusion with an n-gram model (modified beam search only)."""
    cuts = load_cuts(cuts_path)
    if lists is not None:
        missing = next((c.id for c in cuts if c.id not in lists), None)
        if missing is not None:
            raise UserError(f"{lists_path}: no bias list for utterance {missing} of {cuts_path}; build the lists from the "
                            "same part ('asr prepare bias-lists')")
    biased = lists is not None and getattr(model, "biasing", None) is not None
    bias_scores = (ErrorCounts(), ErrorCounts(), ErrorCounts())
    delay_sum, delay_count = 0.0, 0
    part = set_name(cuts_path)
    tag = tag or f"{part}-{method}"
    rows, errors, words, audio_s, compute_s = [], 0, 0, 0.0, 0.0
    for cut_batch in SimpleCutSampler(cuts, max_duration=max_duration_s):
        batch = collate(cut_batch, tokenizer)
        audio_s += sum(c.duration for c in cut_batch)
        t0 = time.perf_counter()
        with torch.no_grad():
            if biased:
                hyps, timestamps = _decode_biased(model, batch, lists, method, beam, lm)
            else:
                enc, enc_lens = model.encode(batch["x"], batch["x_lens"])
                result = search(model, enc, enc_lens, method, beam, lm=lm)
                hyps, timestamps = result.hyps, result.timestamps
        compute_s += time.perf_counter() - t0
        if delay_reference is not None:
            refs = [tokenizer.encode(t) for t in batch["texts"]]
            ref_frames = forced_align(delay_reference, batch["x"], batch["x_lens"], refs)
            d, count = symbol_delay(hyps, timestamps, refs, ref_frames)
            if count:
                delay_sum, delay_count = delay_sum + d * count, delay_count + count
        for uid, ref, hyp_ids in zip(batch["ids"], batch["texts"], hyps):
            hyp = tokenizer.decode(hyp_ids)
            e, n = word_errors(ref, hyp)
            errors, words = errors + e, words + n
            rows.append((uid, ref, hyp, e, n))
            if lists is not None:
                bias_scores = tuple(a + b for a, b in zip(bias_scores, biased_word_errors(ref, hyp, set(lists[uid].bias_words))))
    wer = 100.0 * errors / max(words, 1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = f"%WER {wer:.2f} [ {errors} / {words} ], {len(rows)} utterances, {method}"
    if lm is not None:
        summary += f", n-gram LM of order {lm.lm.order} at scale {lm.scale:g}"
    write_text_atomic(out / f"recogs-{tag}.txt", "".join(f"{u}:\tref={r}\n{u}:\thyp={h}\n" for u, r, h, _, _ in rows))
    by_errors = sorted(rows, key=lambda row: (-row[3], row[0]))
    write_text_atomic(out / f"errs-{tag}.txt", summary + "\n\nPER-UTT DETAILS: errors / words  ref->hyp alignment\n"
           + "".join(f"{u}\t{e}/{n}\t{alignment(r, h)}\n" for u, r, h, e, n in by_errors))
    delay_ms = ENCODER_FRAME_MS * delay_sum / delay_count if delay_count else None
    delay_note = "" if delay_ms is None else f", symbol delay {delay_ms:.1f} ms over {delay_count} tokens"
    bias_note = ""
    if lists is not None:
        all_, u, b = bias_scores
        bias_note = (f"; bias lists {lists_path} ({'biased' if biased else 'scored only: the model has no biasing adapter'}): "
                     f"score.py WER {all_.rate:.2f} [ {all_.errors} / {all_.ref_words} ], U-WER {u.rate:.2f} "
                     f"[ {u.errors} / {u.ref_words} ], B-WER {b.rate:.2f} [ {b.errors} / {b.ref_words} ], bias-word recall "
                     f"{b.recall:.2f}")
    write_text_atomic(out / f"wer-{tag}.txt", summary + delay_note + bias_note + "\n")
    return DecodeResult(wer, errors, words, compute_s / max(audio_s, 1e-9), len(rows), 0, 0.0, method, beam, delay_ms,
                        part, audio_s, bias_scores if lists is not None else None, biased,
                        None if lm is None else lm.lm.order, None if lm is None else lm.scale)


def _decode_biased(model, batch: dict, lists: dict[str, BiasEntry], method: str, beam: int, lm: LmFusion | None = None):
    """(hyps, timestamps) of a batch, each utterance searched with its own bias list; the encoder and the
    phrase encoder run once for the batch (the lists' phrases together), the adapters and the search per
    utterance."""
    enc, enc_lens = model.encoder(batch["x"], batch["x_lens"])  # (N, T', E)
    pool = BiasedModel.embed_phrases(model, [p for uid in batch["ids"] for p in lists[uid].bias_list])
    hyps, timestamps = [], []
    for i, uid in enumerate(batch["ids"]):
        biased = BiasedModel(model, lists[uid].bias_list, pool)
        result = search(biased, biased.project_encoder_out(enc[i : i + 1]), enc_lens[i : i + 1], method, beam, lm=lm)
        hyps.append(result.hyps[0])
        timestamps.append(result.timestamps[0])
    return hyps, timestamps


@torch.no_grad()
def transcribe(model, tokenizer, samples: torch.Tensor, method: str = "greedy", beam: int = 4,
               lm: LmFusion | None = None) -> str:
    """The text of a whole recording ((S,) samples at 16 kHz), decoded offline. ``model``: a Transducer,
    or a ``BiasedModel`` (a biasing transducer with its list); ``lm``: shallow fusion."""
    x = fbank(samples).unsqueeze(0)
    enc, enc_lens = model.encode(x, torch.tensor([x.size(1)]))
    return tokenizer.decode(search(model, enc, enc_lens, method, beam, lm=lm).hyps[0])
