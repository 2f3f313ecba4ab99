#!/usr/bin/env bash
# Encoder comparison on the synth corpus (recipes/synth/RESULTS.md, "Encoder comparison"): LSTM, Conformer and ConvRNN-T
# of about 3 M parameters, each trained for the same number of minutes on the same corpus, features
# and vocabulary with the pruned, modified RNN-T loss, then decoded on the four held-out-voice test
# splits with modified beam search (beam 8) and greedy search. The Conformer is trained first:
# decoded with full context it gives the reference alignments of the symbol delay. Writes
# exp/compare-<size>-<minutes>min/{compare.json, compare.png} (dev WER against training minutes)
# and prints the table.
#
# Usage (from the repository root, with the venv's `asr` on PATH):
#   bash recipes/synth/compare.sh                      # 8 minutes per model
#   bash recipes/synth/compare.sh --minutes 30
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

# seconds per training step (60 s batches) on the EPYC 2-core CPU, 2026-12-07
declare -A STEP_SECONDS=([conformer]=0.48 [lstm]=0.30 [convrnnt]=0.52)
exp=exp/compare-$size-${minutes}min
fbank=data/fbank/synth-$size
mkdir -p "$exp"
bash recipes/synth/run.sh --size "$size" --stop-stage 3
test_cuts=(); for t in test test-open test-names test-engine; do test_cuts+=("$fbank/cuts_$t.jsonl.gz"); done
for model in conformer lstm convrnnt; do
  steps=$(python3 -c "print(int($minutes * 60 / ${STEP_SECONDS[$model]}))")
  bash recipes/synth/run.sh --size "$size" --stage 4 --stop-stage 4 --config "recipes/synth/$model.yaml" \
    --exp "$exp/$model" --set train.max_steps="$steps" --set train.max_minutes="$minutes" \
    --set train.valid_every=$((steps / 6 + 1)) --set train.save_every="$steps" --set train.progress=false
  asr decode --checkpoint "$exp/$model/final.pt" --cuts "${test_cuts[@]}" --out "$exp/$model/decode" \
    --decoding-method modified_beam_search --beam 8 \
    --delay-reference "$exp/conformer/final.pt" --results-json "$exp/$model/results.json"
  asr decode --checkpoint "$exp/$model/final.pt" --cuts "${test_cuts[@]}" --out "$exp/$model/decode" \
    --decoding-method greedy --results-json "$exp/$model/results-greedy.json"
done
python3 recipes/synth/compare_report.py "$exp" "$minutes"
