"""The encoder comparison's report (run by compare.sh): a markdown table, ``compare.json`` and a PNG of
dev WER against training minutes, from ``<exp>/<encoder>/{results.json, results-greedy.json,
config.yaml, validation.jsonl, decode/recogs-*.txt}``. Each encoder's beam-8 WER on each test split is
also given minus the LSTM's with a paired-bootstrap 95 % interval over the split's utterances
(``vs_lstm_<split>``: [difference, low, high] in points; negative = fewer errors than the LSTM).

Usage: python recipes/synth/compare_report.py EXP_DIR MINUTES
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from asr.metrics import paired_bootstrap, read_recogs  # noqa: E402

ENCODERS = ("lstm", "conformer", "convrnnt")
SETS = ("test", "test_open", "test_names", "test_engine")


def row(exp: Path, encoder: str, minutes: float) -> dict:
    beam = json.loads((exp / encoder / "results.json").read_text())
    greedy = json.loads((exp / encoder / "results-greedy.json").read_text())
    validation = [json.loads(line) for line in (exp / encoder / "validation.jsonl").read_text().splitlines()]
    enc = yaml.safe_load((exp / encoder / "config.yaml").read_text())["model"]["encoder"]
    # LSTM and ConvRNN-T are causal: decoded in the Conformer's 320 ms chunks, as sherpa-onnx would
    chunk_ms = 40 * enc.get("chunk_encoder_frames", 8)
    out = {"encoder": encoder, "minutes": minutes, "train_minutes": beam["train_minutes"],
           "steps": validation[-1]["step"], "params": beam["params"]}
    for s in SETS:
        out[f"{s}_wer"] = beam[f"{s}_wer"]  # modified beam search, beam 8
    out["greedy_open_wer"] = greedy["test_open_wer"]  # the key the issue's acceptance names
    for s in ("test", "test_names", "test_engine"):
        out[f"greedy_{s}_wer"] = greedy[f"{s}_wer"]
    out.update({"algorithmic_latency_ms": chunk_ms + 50, "decode_rtf": beam["decode_rtf"],
                "greedy_decode_rtf": greedy["decode_rtf"], "symbol_delay_ms": beam.get("test_open_symbol_delay_ms"),
                "dev_wer_curve": [[v["train_minutes"], v["dev_wer"]] for v in validation]})
    return out


def against_lstm(exp: Path, encoder: str) -> dict:
    """``vs_lstm_<split>``: this encoder's beam-8 WER minus the LSTM's, with its paired-bootstrap interval."""
    out = {}
    for s in SETS:
        name = f"recogs-{s.replace('_', '-')}-modified_beam_search.txt"
        mine, lstm = exp / encoder / "decode" / name, exp / "lstm" / "decode" / name
        if mine.is_file() and lstm.is_file():
            out[f"vs_lstm_{s}"] = [round(v, 2) for v in paired_bootstrap(read_recogs(mine), read_recogs(lstm))]
    return out


def main(exp_dir: str, minutes: str) -> None:
    exp = Path(exp_dir)
    rows = [row(exp, encoder, float(minutes)) for encoder in ENCODERS if (exp / encoder / "results-greedy.json").is_file()]
    for r in rows:
        if r["encoder"] != "lstm":
            r.update(against_lstm(exp, r["encoder"]))
    print("| encoder | params | steps | train min | test | test-open | test-names | test-engine | test-open greedy "
          "| algorithmic latency ms | symbol delay ms (test-open) | decode RTF beam / greedy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        delay = "-" if r["symbol_delay_ms"] is None else f"{r['symbol_delay_ms']:.0f}"
        print(f"| {r['encoder']} | {r['params'] / 1e6:.2f} M | {r['steps']} | {r['train_minutes']:.1f} | {r['test_wer']:.2f} | "
              f"{r['test_open_wer']:.2f} | {r['test_names_wer']:.2f} | {r['test_engine_wer']:.2f} | {r['greedy_open_wer']:.2f} | "
              f"{r['algorithmic_latency_ms']} | {delay} | {r['decode_rtf']:.4f} / {r['greedy_decode_rtf']:.4f} |")
    for r in rows:
        if r["encoder"] != "lstm":
            print(f"{r['encoder']} minus lstm (beam 8, points, 95 % paired bootstrap): " + "; ".join(
                f"{s} {d:+.2f} [{lo:+.2f}, {hi:+.2f}]" for s in SETS if (v := r.get(f"vs_lstm_{s}")) for d, lo, hi in [v]))
    (exp / "compare.json").write_text(json.dumps(rows, indent=1) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        xs, ys = zip(*r["dev_wer_curve"])
        ax.plot(xs, ys, marker="o", label=f"{r['encoder']} ({r['params'] / 1e6:.1f} M)")
    ax.set_xlabel("training minutes (2-core CPU)")
    ax.set_ylabel("dev WER % (greedy)")
    ax.set_title(f"synth corpus, {minutes}-minute budget")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(exp / "compare.png", dpi=100)
    print(f"wrote {exp / 'compare.json'} and {exp / 'compare.png'}")


if __name__ == "__main__":
    main(*sys.argv[1:])
