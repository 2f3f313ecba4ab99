"""``asr bench biasing``: contextual biasing on per-utterance bias lists (Le et al. 2021's protocol,
``asr.data.bias_lists``), system by system, list size by list size, with and without the true words.

    asr prepare bias-lists --train data/synth-small/train --parts data/synth-small/test-names --out data/bias/synth-small
    asr bench biasing --base exp/demo/final.pt --checkpoint exp/biasing/adapter/final.pt \\
        --cuts data/fbank/synth-small/cuts_test-names.jsonl.gz --lists data/bias/synth-small --json exp/biasing/results.json

Systems (modified beam search, ``--beam``, on PyTorch):

* ``none``: the transducer without biasing (``--base``);
* ``hotwords``: the same with each utterance's list as hotwords (shallow fusion on the Aho-Corasick
  graph, ``asr.decoding.context_graph``, ``--hotwords-score`` per token, finalized at the end as icefall does);
* ``acoustic``: the biasing adapter with the character phrase encoder (``--checkpoint``), fed the list;
* ``acoustic+hotwords``: both;
* ``acoustic+semantic`` and ``acoustic+semantic+hotwords``: the same with an adapter whose phrases are
  also encoded by the character language model (``--semantic-checkpoint``, ``model.biasing.type:
  acoustic+semantic``), when one is given.

Conditions: ``with_true`` (the list as built: the utterance's bias words and distractors) and
``without_true`` (the same list less the utterance's own bias words: what biasing does when the
entity is not in the list). Metrics as fbai-speech's ``score.py`` counts them: WER, U-WER (words not
in the utterance's bias words), B-WER (bias words; inserted bias words count), and the decode real-time
factor (encoder, adapter and search, features cached; the adapter's phrase embeddings are computed once
for all the lists' phrases before the timing starts, as a device encodes its list once, not per
utterance). The bias words are the utterance's rare words,
whichever the condition. The last lines give paired-bootstrap 95 % intervals of the B-WER and U-WER
differences of the adapter against ``none`` and ``hotwords`` at each list size (with the true words), and
of the semantic adapter against the acoustic one.
``--json`` writes the rows, a JSON list (keys ``system``, ``n``, ``condition``, ``wer``, ``u_wer``, ``b_wer``,
``recall`` (bias-word recall: the utterances' bias words recognised, in percent), ``rtf``, and on the adapter's rows with the true words ``vs_none_b_wer`` ... ``vs_hotwords_u_wer``: the
difference and its interval; ``vs_acoustic_b_wer`` ... on the semantic adapter's rows).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from lhotse.dataset import SimpleCutSampler

from asr.checkpoint import checkpoint_tokenizer, load_model
from asr.data.bias_lists import read_lists
from asr.data.dataset import collate, load_cuts
from asr.decode import set_name
from asr.decoding.context_graph import ContextGraph
from asr.decoding.search import finalize_context, search
from asr.errors import UserError
from asr.fileio import write_text_atomic
from asr.metrics import ErrorCounts, biased_word_errors, paired_bootstrap_counts
from asr.models.transducer import BiasedModel

SYSTEMS = ("none", "hotwords", "acoustic", "acoustic+hotwords", "acoustic+semantic", "acoustic+semantic+hotwords")
CONDITIONS = ("with_true", "without_true")


def decode_with_lists(model, tokenizer, cuts, lists: dict[str, list[str]], adapter: bool, hotwords_score: float | None,
                      beam: int, max_duration_s: float = 120.0) -> tuple[dict[str, str], float]:
    """({utt_id: hypothesis}, real-time factor): every utterance searched with its own list, through the
    adapter (``adapter``) and/or as hotwords (``hotwords_score`` per token; None: no hotwords). The
    adapter's phrase embeddings are computed once for all the lists' phrases, outside the timed part, as
    a device encodes its contact list once and not per utterance."""
    hyps, compute_s, audio_s = {}, 0.0, 0.0
    pool = BiasedModel.embed_phrases(model, [p for lst in lists.values() for p in lst]) if adapter and lists else None
    for cut_batch in SimpleCutSampler(cuts, max_duration=max_duration_s):
        batch = collate(cut_batch, tokenizer)
        audio_s += sum(c.duration for c in cut_batch)
        t0 = time.perf_counter()
        with torch.no_grad():
            enc, enc_lens = model.encoder(batch["x"], batch["x_lens"])  # (N, T', E)
            for i, uid in enumerate(batch["ids"]):
                searched = BiasedModel(model, lists[uid], pool) if adapter else model
                graph = None
                if hotwords_score is not None and lists[uid]:
                    graph = ContextGraph([tokenizer.encode_max_score(w) for w in lists[uid]], default_score=hotwords_score)
                state = search(searched, searched.project_encoder_out(enc[i : i + 1]), enc_lens[i : i + 1],
                               "modified_beam_search", beam, context_graph=graph)
                hyps[uid] = tokenizer.decode(finalize_context(state).hyps[0])
        compute_s += time.perf_counter() - t0
    return hyps, compute_s / max(audio_s, 1e-9)


def score(refs: dict[str, str], hyps: dict[str, str], bias_words: dict[str, set[str]]) -> list[tuple[ErrorCounts, ...]]:
    """Per utterance (sorted by id): (all, unbiased, biased) error counts."""
    return [biased_word_errors(refs[u], hyps[u], bias_words[u]) for u in sorted(refs)]


def _total(per_utt, k: int) -> ErrorCounts:
    return sum((counts[k] for counts in per_utt), ErrorCounts())


def run(a) -> None:
    torch.set_num_threads(a.threads)
    part = set_name(a.cuts)
    base, base_cfg, base_ckpt = load_model(a.base)
    biased, cfg, ckpt = load_model(a.checkpoint)
    if biased.biasing is None:
        raise UserError(f"{a.checkpoint}: has no biasing adapter (model.biasing); pass the checkpoint of a biasing run, "
                        f"and the transducer it started from as --base")
    tokenizer = checkpoint_tokenizer(ckpt, cfg, a.checkpoint)
    if checkpoint_tokenizer(base_ckpt, base_cfg, a.base).vocab_size != tokenizer.vocab_size:
        raise UserError(f"{a.base} and {a.checkpoint} have different vocabularies; --base must be the transducer the "
                        "biasing run started from")
    semantic = None
    if a.semantic_checkpoint:
        semantic, sem_cfg, sem_ckpt = load_model(a.semantic_checkpoint)
        if semantic.biasing is None or semantic.biasing.semantic is None:
            raise UserError(f"{a.semantic_checkpoint}: not a semantic biasing model (model.biasing.type: "
                            "acoustic+semantic); pass the checkpoint of such a run")
        if checkpoint_tokenizer(sem_ckpt, sem_cfg, a.semantic_checkpoint).vocab_size != tokenizer.vocab_size:
            raise UserError(f"{a.semantic_checkpoint} and {a.checkpoint} have different vocabularies")
    systems = [s for s in SYSTEMS if semantic is not None or "semantic" not in s]
    adapters = {"acoustic": biased, "acoustic+semantic": semantic}
    cuts = load_cuts(a.cuts)
    if a.max_utts:
        cuts = cuts.subset(first=a.max_utts)
    refs = {c.id: " ".join(s.text for s in c.supervisions) for c in cuts}
    rows, per_utt = [], {}
    none_hyps, none_rtf = decode_with_lists(base, tokenizer, cuts, {}, False, None, a.beam)
    for n in a.sizes:
        path = Path(a.lists) / f"{part}.biasing_{n}.tsv"
        entries = {e.utt_id: e for e in read_lists(path)}
        missing = next((u for u in refs if u not in entries), None)
        if missing is not None:
            raise UserError(f"{path}: no list for utterance {missing} of {a.cuts}; build the lists from the same part")
        bias_words = {u: set(entries[u].bias_words) for u in refs}
        for condition in CONDITIONS:
            lists = {u: entries[u].bias_list if condition == "with_true" else
                     [w for w in entries[u].bias_list if w not in bias_words[u]] for u in refs}
            for system in systems:
                if system == "none":
                    hyps, rtf = none_hyps, none_rtf
                else:
                    hotwords = a.hotwords_score if "hotwords" in system else None
                    model = base if system == "hotwords" else adapters[system.removesuffix("+hotwords")]
                    hyps, rtf = decode_with_lists(model, tokenizer, cuts, lists, system.startswith("acoustic"), hotwords, a.beam)
                counts = score(refs, hyps, bias_words)
                per_utt[(system, n, condition)] = counts
                wer, u, b = (_total(counts, k) for k in range(3))
                rows.append({"system": system, "n": n, "condition": condition, "wer": round(wer.rate, 2),
                             "u_wer": round(u.rate, 2), "b_wer": round(b.rate, 2), "recall": round(b.recall, 2),
                             "rtf": round(rtf, 4),
                             "bias_words": b.ref_words, "utterances": len(refs)})
                print(f"  {system:18s} n={n:<4d} {condition:12s} WER {wer.rate:6.2f}  U-WER {u.rate:6.2f}  "
                      f"B-WER {b.rate:6.2f}  RTF {rtf:.4f}", flush=True)
    intervals = {}
    for row in rows:
        if row["system"] not in adapters or row["condition"] != "with_true":
            continue
        mine = per_utt[(row["system"], row["n"], "with_true")]
        for other in ("none", "hotwords") + (("acoustic",) if row["system"] == "acoustic+semantic" else ()):
            theirs = per_utt[(other, row["n"], "with_true")]
            for k, name in ((2, "b_wer"), (1, "u_wer")):
                diff = paired_bootstrap_counts([c[k].errors for c in mine], [c[k].errors for c in theirs],
                                               [c[k].ref_words for c in mine])
                row[f"vs_{other}_{name}"] = [round(v, 2) for v in diff]
                intervals[f"{row['system']}_vs_{other}_{name}@{row['n']}"] = row[f"vs_{other}_{name}"]
    print(f"\n{len(refs)} utterances of {part}; lists from {a.lists}; modified beam search, beam {a.beam}; "
          f"hotwords {a.hotwords_score:g} per token\n")
    print("| system | N | condition | WER % | U-WER % | B-WER % | bias-word recall % | decode RTF |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r['n']} | {r['condition']} | {r['wer']:.2f} | {r['u_wer']:.2f} | {r['b_wer']:.2f} "
              f"| {r['recall']:.2f} | {r['rtf']:.4f} |")
    print("\npaired-bootstrap 95 % intervals, percentage points (adapter minus other; negative: the adapter is better):")
    for key, (d, lo, hi) in intervals.items():
        print(f"  {key}: {d:+.2f} [{lo:+.2f}, {hi:+.2f}]")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        settings = {"part": part, "beam": a.beam, "hotwords_score": a.hotwords_score, "base": str(a.base),
                    "checkpoint": str(a.checkpoint), "semantic_checkpoint": str(a.semantic_checkpoint) if a.semantic_checkpoint else None,
                    "lists": str(a.lists)}
        write_text_atomic(a.json, json.dumps([{**r, **settings} for r in rows], indent=1) + "\n")
        print(f"wrote {a.json}")
