"""``asr bench wakeword``: a wake-word detector's false rejects against false alarms per hour on the
wake-word data (``asr prepare wakeword``), with the DET curve, F1 at the 1-alarm-per-hour point and
the real-time factor.

    asr prepare wakeword --out data/wakeword
    asr bench wakeword --model-dir exp/demo/onnx --data data/wakeword --negatives data/synth-small/test \\
        --json exp/wakeword/results.json --plot exp/wakeword/det.png

Systems, each a row:

- ``keyword-graph``: the plain transducer with the wake word as a keyword, sherpa-onnx's keyword
  spotter (``asr kws``, ``asr.decoding.keywords``), the baseline of the dual-attention wake-word model
  (not built yet). Each utterance is spotted alone, fed 100 ms at a time; a detection's score is the
  mean acoustic probability of the wake word's tokens.

How the curve is drawn: the spotter runs once with its trigger threshold at 0 (every completed match
after a trailing blank frame is a detection, with its score), and each threshold t of the curve keeps
the detections scored >= t. (Run at t, the spotter would not reset after the detections below t; they
rarely sit right before a real one, so the post-hoc sweep is the usual approximation, e.g. wekws's.)
Positives: the ``positive`` utterances of ``--split``, detected when a detection of the wake word
scores >= t. False alarms: every detection of the wake word in the ``confusable`` and ``negative``
utterances and in ``--negatives`` folders (whole corpus splits say no wake word), per hour of that audio.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from asr.audio import read_audio
from asr.data.librispeech import test_set
from asr.decoding.keywords import Keyword, keyword_graph
from asr.errors import UserError
from asr.fileio import write_text_atomic
from asr.frontend import SAMPLE_RATE_HZ
from asr.metrics import det_points, frr_at
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


def keyword_graph_row(model_dir: str, data: Path, split: str, negatives: list[str], keywords_score: float,
                      max_active_paths: int, max_utts: int | None) -> dict:
    meta = json.loads((data / "wakeword.json").read_text())
    model = OnnxTransducer(model_dir, num_threads=1)
    tokens = Tokenizer(Path(model_dir) / "bpe.model").encode(meta["word"].upper())
    graph = keyword_graph([Keyword(tokens, meta["word"], keywords_score, 0.0)], keywords_score, 0.0)
    labels = read_labels(data / split)
    files, _ = test_set(data / split, max_utts)
    positives = [f for f in files if labels[f.stem] == "positive"]
    clean = [f for f in files if labels[f.stem] != "positive"]
    for folder in negatives:
        clean += test_set(folder, max_utts)[0]
    pos_scores, pos_s, pos_compute = spot_scores(model, graph, positives, max_active_paths)
    neg_scores, neg_s, neg_compute = spot_scores(model, graph, clean, max_active_paths)
    points = det_points([max(s) if s else None for s in pos_scores], [x for s in neg_scores for x in s], neg_s / 3600)
    row = {"system": "keyword-graph", "word": meta["word"], "positives": len(positives), "negative_utterances": len(clean),
           "negative_hours": round(neg_s / 3600, 4), "rtf": round((pos_compute + neg_compute) / (pos_s + neg_s), 5)}
    for fa in FA_PER_HOUR:
        row[f"frr_at_{str(fa).replace('.', '_').removesuffix('_0')}fa"] = round(frr_at(points, fa).frr, 2)
    operating = frr_at(points, 1.0)
    row.update({"threshold_at_1fa": operating.threshold, "f1": round(operating.f1, 2),
                "det": [[p.fa_per_hour, p.frr] for p in points]})
    return row


def plot_det(rows: list[dict], path: str) -> None:
    import matplotlib  # lazy: an optional plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after the backend is chosen

    fig, ax = plt.subplots(figsize=(5, 4))
    for r in rows:
        fa, frr = np.array(r["det"]).T
        ax.step(fa, frr, where="post", label=r["system"])
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
    rows = [keyword_graph_row(a.model_dir, data, a.split, a.negatives, a.keywords_score, a.max_active_paths,
                              a.max_utts or None)]
    print(f"\nwake word {rows[0]['word']!r}, {a.split} split of {data}"
          f"{' + ' + ', '.join(a.negatives) if a.negatives else ''}; one thread, 100 ms pieces\n")
    print("| system | positives | negative hours | FRR % at 0.5 / 1 / 2 FA/h | F1 % at 1 FA/h | RTF |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r['positives']} | {r['negative_hours']:.2f} | {r['frr_at_0_5fa']:.2f} / "
              f"{r['frr_at_1fa']:.2f} / {r['frr_at_2fa']:.2f} | {r['f1']:.2f} | {r['rtf']:.4f} |")
    if a.json:
        baseline = rows[0]
        write_text_atomic(a.json, json.dumps({"baseline_f1": baseline["f1"], "rows": rows}, indent=2) + "\n")
        print(f"wrote {a.json}")
    if a.plot:
        plot_det(rows, a.plot)
        print(f"wrote {a.plot}")
