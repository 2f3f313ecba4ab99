#!/usr/bin/env bash
# Encoder comparison on the synth corpus (recipes/synth/RESULTS.md, "Encoder comparison"): LSTM, Conformer and ConvRNN-T
# of about 3 M parameters, each trained for the same number of minutes on the `small` corpus with
# the pruned, modified RNN-T loss, then decoded on the held-out-voice test split. The Conformer is
# trained first: decoded with full context it gives the reference alignments of the symbol delay.
#
# Usage (from the repository root, with the venv's `asr` on PATH):
#   bash recipes/synth/compare.sh                      # 8 minutes per model
#   bash recipes/synth/compare.sh --minutes 20 --size medium
# Steps per model are set so that the cosine schedule ends near the time limit (measured step
# times on a 2-core CPU, see STEP_SECONDS); train.max_minutes stops a slower machine on time.
set -euo pipefail

minutes=8
size=small
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    *) echo "error: unknown option $1 (see the usage block at the top of $0)" >&2; exit 2 ;;
  esac
done

# seconds per training step (60 s batches) on this project's 2-core CPU
declare -A STEP_SECONDS=([conformer]=0.55 [lstm]=0.32 [convrnnt]=0.55)
exp=exp/compare-$size
fbank=data/fbank/synth-$size
mkdir -p "$exp"
bash recipes/synth/run.sh --size "$size" --stop-stage 3
for model in conformer lstm convrnnt; do
  steps=$(python3 -c "print(int($minutes * 60 / ${STEP_SECONDS[$model]}))")
  bash recipes/synth/run.sh --size "$size" --stage 4 --stop-stage 4 --config "recipes/synth/$model.yaml" \
    --exp "$exp/$model" --set train.max_steps="$steps" --set train.max_minutes="$minutes" \
    --set train.valid_every=1000000 --set train.save_every="$steps" --set train.progress=false
  asr decode --checkpoint "$exp/$model/final.pt" --cuts "$fbank/cuts_test.jsonl.gz" --out "$exp/$model/decode" \
    --delay-reference "$exp/conformer/final.pt" --results-json "$exp/$model/results.json"
done
python3 - "$exp" <<'PY'
import json, sys
from pathlib import Path

import yaml

exp = Path(sys.argv[1])
print("| encoder | params | test WER % | algorithmic latency ms | decode RTF | symbol delay ms | train min |")
print("|---|---|---|---|---|---|---|")
for model in ("lstm", "conformer", "convrnnt"):
    r = json.loads((exp / model / "results.json").read_text())
    enc = yaml.safe_load((exp / model / "config.yaml").read_text())["model"]["encoder"]
    chunk_ms = 40 * enc.get("chunk_encoder_frames", 8)  # LSTM and ConvRNN-T: decoded in the Conformer's 320 ms chunks
    print(f"| {model} | {r['params'] / 1e6:.2f} M | {r['test_wer']:.2f} | {chunk_ms} + 50 | {r['decode_rtf']:.4f} | "
          f"{r.get('symbol_delay_ms', float('nan')):.0f} | {r['train_minutes']:.1f} |")
PY
