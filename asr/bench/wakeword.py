"""``asr bench wakeword``: a wake-word detector's false rejects against false alarms per hour on the
wake-word data (``asr prepare wakeword``), with the DET curve, F1 at the 1-alarm-per-hour point and
the real-time factor.

    asr prepare wakeword --out data/wakeword
    asr bench wakeword --model-dir exp/demo/onnx --data data/wakeword --negatives data/synth-small/test \\
        --json exp/wakeword/results.json --plot exp/wakeword/det.png

Systems, each a row:

- ``keyword-graph`` (``--model-dir``, an ONNX export of a plain transducer): the wake word as a keyword,
  sherpa-onnx's keyword spotter (``asr kws``, ``asr.decoding.keywords``), the baseline. Each utterance
  is spotted alone, fed 100 ms at a time; a detection's score is the mean acoustic probability of the
  wake word's tokens. The curve: the spotter runs once with its trigger threshold at 0 (every completed
  match after a trailing blank frame is a detection, with its score), and each threshold t keeps the
  detections scored >= t. (Run at t, the spotter would not reset after the detections below t; they
  rarely sit right before a real one, so the post-hoc sweep is the usual approximation, e.g. wekws's.)
- ``dual-attention`` (``--checkpoint``, a model with ``model.wakeword``): the wake-word detector's
  per-frame probabilities, smoothed and turned into events by ``asr.decoding.wakeword``'s rule, run
  exactly at every threshold of the curve (each distinct peak of a positive utterance). The row also
  gives the attention FLOPs of a frame of each kind (``asr.models.wakeword.attention_flops``, which a test
  checks against ``torch.utils.flop_counter``; the full branch over a list of ``--list-size`` phrases,
  keys and values computed once per list), the total FLOPs of a frame of each kind (the encoder's counted
  by ``torch.utils.flop_counter`` on the first positive, its LSTMs by :func:`lstm_flops`, per encoder
  frame, plus the detector and the branch; the predictor and joiner, which run per search step, not per
  frame, are left out), and the command WER: greedy, no bias list, the words after the wake word
  (``asr.metrics.errors_after``), for this model and for ``--base-checkpoint`` (the biasing model it
  was fine-tuned from) on the same positives; and the FRR at the 1 FA/h threshold of each engine's
  positives (espeak-ng's voices together, flite's and festival's by voice: ``SPEAKERS.txt``).

Positives: the ``positive`` utterances of ``--split``, detected at t when an event fires in them. False
alarms: every event in the ``confusable`` and ``negative`` utterances and in ``--negatives`` folders
(whole corpus splits say no wake word), per hour of that audio.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from torch.utils.flop_counter import FlopCounterMode

from asr.audio import read_audio
from asr.checkpoint import checkpoint_tokenizer, load_model
from asr.data.librispeech import test_set
from asr.decoding.keywords import Keyword, keyword_graph
from asr.decoding.search import greedy_search
from asr.decoding.wakeword import count_events, smooth
from asr.errors import UserError
from asr.features import fbank
from asr.fileio import write_text_atomic
from asr.frontend import SAMPLE_RATE_HZ
from asr.metrics import OperatingPoint, det_points, errors_after, frr_at, operating_point
from asr.models.wakeword import attention_flops
from asr.streaming.keywords import KeywordStream, file_pieces, spot
from asr.streaming.onnx import OnnxTransducer
from asr.tokenizer import Tokenizer

FA_PER_HOUR = (0.5, 1.0, 2.0)


def read_labels(split_dir: Path) -> dict[str, str]:
    """``{utt_id: label}`` of a wake-word split (``wakeword.tsv``)."""
    path = split_dir / "wakeword.tsv"
    if not path.is_file():
        raise UserError(f"{path}: missing; make the wake-word data with 'asr prepare wakeword --out {split_dir.parent}'")
    return {u: label for u, label, _ in (line.split("\t") for line in path.read_text().splitlines()[1:])}


def spot_scores(model, graph, files: list[Path], max_active_paths: int) -> tuple[list[list[float]], float, float]:
    """Each file's detection scores (the wake word is the only keyword), the audio seconds, the compute seconds."""
    scores, audio_s, compute_s = [], 0.0, 0.0
    for f in files:
        x = read_audio(str(f))
        audio_s += len(x) / SAMPLE_RATE_HZ
        t0 = time.perf_counter()
        detections = spot(KeywordStream(model, graph, max_active_paths), file_pieces(x))
        compute_s += time.perf_counter() - t0
        scores.append([d.score for d in detections])
    return scores, audio_s, compute_s


def _files(data: Path, split: str, negatives: list[str], max_utts: int | None) -> tuple[list[Path], list[Path], dict[str, str]]:
    """(positives, wake-word-free files, transcripts) of the bench."""
    labels = read_labels(data / split)
    files, refs = test_set(data / split, max_utts)
    positives = [f for f in files if labels[f.stem] == "positive"]
    clean = [f for f in files if labels[f.stem] != "positive"]
    for folder in negatives:
        clean += test_set(folder, max_utts)[0]
    if not positives:
        raise UserError(f"{data / split}: no positive utterance among the first {len(files)}; raise --max-utts")
    return positives, clean, refs


def read_voices(split_dir: Path) -> dict[str, str]:
    """``{speaker: engine}`` of a corpus-layout split (``SPEAKERS.txt``): ``espeak-ng`` for its voices,
    ``flite <voice>`` or ``festival <voice>`` for the others; {} without the file."""
    path = split_dir / "SPEAKERS.txt"
    if not path.is_file():
        return {}
    voices = {}
    for line in path.read_text().splitlines():
        parts = [p.strip() for p in line.split("|")]
        if line.startswith(";") or len(parts) != 3:
            continue
        speaker, language, variant = parts
        voices[speaker] = f"{language} {variant}" if language in ("flite", "festival") else "espeak-ng"
    return voices


def frr_by_voice(positives: list[Path], peaks: list[float], threshold: float, voices: dict[str, str]) -> dict:
    """FRR (%) at ``threshold`` of the positives of each engine (``read_voices``; a file's speaker is its
    folder two levels up), from each positive's peak smoothed probability."""
    groups: dict[str, list[float]] = {}
    for f, peak in zip(positives, peaks):
        groups.setdefault(voices.get(f.parts[-3], "unknown"), []).append(peak)
    return {v: round(100 * sum(p < threshold for p in ps) / len(ps), 2) for v, ps in sorted(groups.items())}


def _det_fields(points: list[OperatingPoint]) -> dict:
    row = {f"frr_at_{str(fa).replace('.', '_').removesuffix('_0')}fa": round(frr_at(points, fa).frr, 2) for fa in FA_PER_HOUR}
    operating = frr_at(points, 1.0)
    row.update({"threshold_at_1fa": operating.threshold, "f1": round(operating.f1, 2),
                "det": [[p.fa_per_hour, p.frr] for p in points]})
    return row


def keyword_graph_row(model_dir: str, data: Path, split: str, negatives: list[str], keywords_score: float,
                      max_active_paths: int, max_utts: int | None) -> dict:
    meta = json.loads((data / "wakeword.json").read_text())
    model = OnnxTransducer(model_dir, num_threads=1)
    tokens = Tokenizer(Path(model_dir) / "bpe.model").encode(meta["word"].upper())
    graph = keyword_graph([Keyword(tokens, meta["word"], keywords_score, 0.0)], keywords_score, 0.0)
    positives, clean, _ = _files(data, split, negatives, max_utts)
    pos_scores, pos_s, pos_compute = spot_scores(model, graph, positives, max_active_paths)
    neg_scores, neg_s, neg_compute = spot_scores(model, graph, clean, max_active_paths)
    points = det_points([max(s) if s else None for s in pos_scores], [x for s in neg_scores for x in s], neg_s / 3600)
    return {"system": "keyword-graph", "word": meta["word"], "positives": len(positives), "negative_utterances": len(clean),
            "negative_hours": round(neg_s / 3600, 4), "rtf": round((pos_compute + neg_compute) / (pos_s + neg_s), 5),
            **_det_fields(points)}


@torch.no_grad()
def detector_curves(model, files: list[Path], window: int) -> tuple[list[np.ndarray], float, float]:
    """Each file's smoothed wake-word probabilities (one per encoder frame), the audio seconds and the
    compute seconds (features, encoder and detector)."""
    curves, audio_s, compute_s = [], 0.0, 0.0
    for f in files:
        x = read_audio(str(f))
        audio_s += len(x) / SAMPLE_RATE_HZ
        t0 = time.perf_counter()
        feats = fbank(torch.from_numpy(x)).unsqueeze(0)
        enc, _ = model.encoder(feats, torch.tensor([feats.size(1)]))
        curves.append(smooth(model.wakeword.probabilities(enc)[0].numpy(), window))
        compute_s += time.perf_counter() - t0
    return curves, audio_s, compute_s


def detector_points(positive: list[np.ndarray], negative: list[np.ndarray], negative_hours: float,
                    refractory: int) -> list[OperatingPoint]:
    """The DET curve of the detector's events: at each distinct peak of a positive curve (and above all
    of them), the positives in which an event fires and the events in the negative curves."""
    peaks = np.sort(np.array([q.max() if len(q) else -np.inf for q in positive]))
    points = []
    for t in sorted(set(peaks.tolist()) - {-np.inf} | {float("inf")}):
        detected = len(peaks) - int(np.searchsorted(peaks, t, side="left"))
        alarms = sum(count_events(q, t, refractory) for q in negative)
        points.append(operating_point(t, detected, len(positive), alarms, negative_hours))
    return points


@torch.no_grad()
def command_wer(model, tokenizer: Tokenizer, files: list[Path], refs: dict[str, str], word: str) -> float:
    """Greedy WER (%) of the words after ``word`` in each file's transcript (``asr.metrics.errors_after``)."""
    errors = words = 0
    for f in files:
        feats = fbank(torch.from_numpy(read_audio(str(f)))).unsqueeze(0)
        enc, enc_lens = model.encode(feats, torch.tensor([feats.size(1)]))
        e, n = errors_after(refs[f.stem], tokenizer.decode(greedy_search(model, enc, enc_lens).hyps[0]), word)
        errors, words = errors + e, words + n
    return 100.0 * errors / max(words, 1)


def lstm_flops(lstm: torch.nn.LSTM, frames: int) -> int:
    """2 x multiply-adds of an ``nn.LSTM`` over ``frames`` steps: per layer and direction, the four gates'
    input and recurrent matmuls (and the projection, with ``proj_size``). torch.utils.flop_counter counts
    none of it (the fused LSTM op is not in its table)."""
    h, p = lstm.hidden_size, lstm.proj_size or lstm.hidden_size
    directions = 2 if lstm.bidirectional else 1
    total = 0
    for layer in range(lstm.num_layers):
        i = lstm.input_size if layer == 0 else p * directions
        total += directions * (4 * h * (i + p) + (h * p if lstm.proj_size else 0))
    return 2 * total * frames


@torch.no_grad()
def encoder_flops(model, feats: torch.Tensor) -> tuple[int, torch.Tensor]:
    """(FLOPs of the encoder on ``feats`` (1, T, F), its output (1, T', E)): torch.utils.flop_counter's
    count plus :func:`lstm_flops` of every ``nn.LSTM`` it runs."""
    lstms = []
    hooks = [m.register_forward_hook(lambda mod, args, out: lstms.append((mod, args[0]))) for m in model.encoder.modules()
             if isinstance(m, torch.nn.LSTM)]
    try:
        with FlopCounterMode(display=False) as counter:
            enc, _ = model.encoder(feats, torch.tensor([feats.size(1)]))
    finally:
        for h in hooks:
            h.remove()
    steps = [x.data.size(0) if isinstance(x, torch.nn.utils.rnn.PackedSequence) else x.size(-2) for _, x in lstms]
    return counter.get_total_flops() + sum(lstm_flops(m, t) for (m, _), t in zip(lstms, steps)), enc


@torch.no_grad()
def frame_flops(model, feats: torch.Tensor, phrases: list[str]) -> dict:
    """FLOPs per encoder frame: the encoder's (:func:`encoder_flops` on ``feats``), the detector's, and each
    branch's attention (``attention_flops``) with the full branch over ``phrases``."""
    encoder_total, enc = encoder_flops(model, feats)
    frames = enc.size(1)
    with FlopCounterMode(display=False) as det_counter:
        model.wakeword.probabilities(enc)
    e = enc.size(-1)
    full = attention_flops(e, model.biasing.encoder_adapter.query.out_features, len(set(phrases)) + 1)
    wake = attention_flops(e, model.wakeword.wake.query.out_features, model.wakeword.wake.keys.size(0))
    base = (encoder_total + det_counter.get_total_flops()) / frames
    return {"attn_flops_full_frame": full, "attn_flops_wakeword_frame": wake,
            "total_flops_full_frame": round(base + full), "total_flops_wakeword_frame": round(base + wake),
            "encoder_flops_frame": round(encoder_total / frames)}


def dual_attention_row(checkpoint: str, base_checkpoint: str | None, data: Path, split: str, negatives: list[str],
                       window: int, refractory: int, list_size: int, max_utts: int | None) -> dict:
    model, cfg, ckpt = load_model(checkpoint)
    if model.wakeword is None:
        raise UserError(f"{checkpoint}: not a wake-word model (no model.wakeword); train one with "
                        "recipes/synth/wakeword.sh, or pass --model-dir for the keyword-graph baseline")
    meta = json.loads((data / "wakeword.json").read_text())
    if meta["word"].upper() != model.wakeword.word:
        raise UserError(f"{checkpoint}: its wake word is {model.wakeword.word!r}, the data's {meta['word']!r}; "
                        "pass the wake-word data the model was trained for")
    tokenizer = checkpoint_tokenizer(ckpt, cfg, checkpoint)
    positives, clean, refs = _files(data, split, negatives, max_utts)
    pos_curves, pos_s, pos_compute = detector_curves(model, positives, window)
    neg_curves, neg_s, neg_compute = detector_curves(model, clean, window)
    points = detector_points(pos_curves, neg_curves, neg_s / 3600, refractory)
    phrases = sorted({w for f in positives + clean if f.stem in refs for w in refs[f.stem].split()})[:list_size]
    row = {"system": "dual-attention", "word": meta["word"], "positives": len(positives), "negative_utterances": len(clean),
           "negative_hours": round(neg_s / 3600, 4), "rtf": round((pos_compute + neg_compute) / (pos_s + neg_s), 5),
           "window_frames": window, "refractory_frames": refractory, **_det_fields(points),
           "frr_at_1fa_by_voice": frr_by_voice(positives, [float(q.max()) if len(q) else -np.inf for q in pos_curves],
                                               frr_at(points, 1.0).threshold, read_voices(data / split)),
           **frame_flops(model, fbank(torch.from_numpy(read_audio(str(positives[0])))).unsqueeze(0), phrases),
           "list_size": len(set(phrases)),
           "wakeword_params": sum(p.numel() for p in model.wakeword.parameters()),
           "params": sum(p.numel() for p in model.parameters())}
    word = model.wakeword.word
    row["command_wer"] = round(command_wer(model, tokenizer, positives, refs, word), 2)
    if base_checkpoint:
        base = load_model(base_checkpoint)[0]
        row["biasing_command_wer"] = round(command_wer(base, tokenizer, positives, refs, word), 2)
    return row


def plot_det(rows: list[dict], path: str) -> None:
    import matplotlib  # lazy: an optional plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after the backend is chosen

    fig, ax = plt.subplots(figsize=(5, 4))
    for i, r in enumerate(rows):  # dashed and on top: a curve that is a vertical line at 0 alarms stays visible
        fa, frr = np.array(r["det"]).T
        ax.step(fa, frr, where="post", label=r["system"], linestyle=("--", "-", ":")[i % 3], linewidth=2.5 - i % 2,
                zorder=len(rows) - i)
    ax.set_xlabel("false alarms per hour")
    ax.set_ylabel("false rejects, % of wake words")
    ax.set_xscale("symlog", linthresh=0.1)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(a) -> None:
    torch.set_num_threads(1)
    data = Path(a.data)
    if not (data / "wakeword.json").is_file():
        raise UserError(f"{data}: not wake-word data (no wakeword.json); make it with 'asr prepare wakeword --out {data}'")
    if not (a.model_dir or a.checkpoint):
        raise UserError("nothing to measure: pass --model-dir (the keyword-graph baseline) and/or --checkpoint "
                        "(a dual-attention wake-word model)")
    max_utts = a.max_utts or None
    rows = []
    if a.model_dir:
        rows.append(keyword_graph_row(a.model_dir, data, a.split, a.negatives, a.keywords_score, a.max_active_paths, max_utts))
    if a.checkpoint:
        rows.append(dual_attention_row(a.checkpoint, a.base_checkpoint, data, a.split, a.negatives, a.window,
                                       a.refractory, a.list_size, max_utts))
    print(f"\nwake word {rows[0]['word']!r}, {a.split} split of {data}"
          f"{' + ' + ', '.join(a.negatives) if a.negatives else ''}; one thread\n")
    print("| system | positives | negative hours | FRR % at 0.5 / 1 / 2 FA/h | F1 % at 1 FA/h | RTF |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r['positives']} | {r['negative_hours']:.2f} | {r['frr_at_0_5fa']:.2f} / "
              f"{r['frr_at_1fa']:.2f} / {r['frr_at_2fa']:.2f} | {r['f1']:.2f} | {r['rtf']:.4f} |")
    dual = next((r for r in rows if r["system"] == "dual-attention"), None)
    if dual is not None:
        print(f"\nattention FLOPs per frame: wake-word branch {dual['attn_flops_wakeword_frame']:,}, full branch "
              f"{dual['attn_flops_full_frame']:,} ({dual['list_size']} phrases): "
              f"{100 * (1 - dual['attn_flops_wakeword_frame'] / dual['attn_flops_full_frame']):.1f} % less; total per frame "
              f"{dual['total_flops_wakeword_frame']:,} vs {dual['total_flops_full_frame']:,}")
        print("FRR % at 1 FA/h by voice: " + ", ".join(f"{v} {frr:.2f}" for v, frr in dual["frr_at_1fa_by_voice"].items()))
        print(f"wake-word parameters {dual['wakeword_params']:,} of {dual['params']:,} "
              f"({100 * dual['wakeword_params'] / dual['params']:.2f} %)")
        base = f", the biasing model it started from {dual['biasing_command_wer']:.2f}" if "biasing_command_wer" in dual else ""
        print(f"command WER (greedy, words after the wake word): {dual['command_wer']:.2f}{base}")
    if a.json:
        summary = {}
        baseline = next((r for r in rows if r["system"] == "keyword-graph"), None)
        if baseline is not None:
            summary["baseline_f1"] = baseline["f1"]
        if dual is not None:
            summary.update({k: dual[k] for k in ("frr_at_1fa", "frr_at_0_5fa", "frr_at_2fa", "f1", "attn_flops_wakeword_frame",
                                                 "attn_flops_full_frame", "command_wer", "biasing_command_wer") if k in dual})
        write_text_atomic(a.json, json.dumps({**summary, "rows": rows}, indent=2) + "\n")
        print(f"wrote {a.json}")
    if a.plot:
        plot_det(rows, a.plot)
        print(f"wrote {a.plot}")
