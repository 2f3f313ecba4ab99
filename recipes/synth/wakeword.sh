#!/usr/bin/env bash
# The dual-attention wake-word transducer on the synth corpus (recipes/synth/RESULTS.md, "Wake word"):
# the wake-word data, a biasing model fine-tuned with a wake-word detector and a small wake-word attention
# branch (asr/models/wakeword.py) on the wake-word training split mixed with the corpus's, its export,
# then `asr bench wakeword`: the keyword-graph baseline on the plain demo model beside the dual-attention
# model. Writes exp/wakeword/results.json and exp/wakeword/det.png.
#
# Usage (from the repository root, with the venv's `asr` on PATH, after `make demo` and recipes/synth/biasing.sh):
#   bash recipes/synth/wakeword.sh                       # zephyra, 32 minutes of training on 2 cores (3000 steps)
#   bash recipes/synth/wakeword.sh --minutes 30 --base exp/biasing/adapter/final.pt
# Every stage skips work whose output exists.
set -euo pipefail

size=small
word=zephyra
base=exp/biasing/adapter/final.pt
plain=exp/demo/onnx
minutes=32
exp=exp/wakeword
while [ $# -gt 0 ]; do
  case "$1" in
    --word) word=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    --plain) plain=$2; shift 2 ;;
    --minutes) minutes=$2; shift 2 ;;
    --exp) exp=$2; shift 2 ;;
    *) echo "error: unknown option $1 (see the usage block at the top of $0)" >&2; exit 2 ;;
  esac
done
[ -f "$base" ] || { echo "error: $base not found; train the biasing model first (bash recipes/synth/biasing.sh)" >&2; exit 2; }
[ -d "$plain" ] || { echo "error: $plain not found; export the demo model first (make demo)" >&2; exit 2; }

data=data/wakeword
manifests=data/manifests/wakeword
fbank=data/fbank/wakeword
mix=$fbank/cuts_train-mix.jsonl.gz
asr prepare wakeword --out "$data" --word "$word" --size "$size"
[ -f "$manifests/cuts_test.jsonl.gz" ] || asr prepare librispeech --root "$data" --out "$manifests" --parts train dev test
[ -f "$fbank/cuts_test.jsonl.gz" ] || asr features --manifests "$manifests" --out "$fbank" --parts train dev test
# the wake-word utterances beside the corpus's, so that the model keeps transcribing what it did
[ -f "$mix" ] || lhotse combine "$fbank/cuts_train.jsonl.gz" "data/fbank/synth-$size/cuts_train.jsonl.gz" "$mix"

if [ ! -f "$exp/dual/final.pt" ]; then
  # the base's model section plus model.wakeword; all weights train (the detector, both branches, the transducer)
  asr train --config "$(dirname "$base")/config.yaml" --set model.wakeword.type=dual-attention \
    --set model.wakeword.word="$word" --set train.init_from="$base" --set train.trainable=all \
    --set train.exp_dir="$exp/dual" --set data.train_cuts="$mix" --set data.dev_cuts="$fbank/cuts_dev.jsonl.gz" \
    --set train.max_minutes="$minutes" --set train.max_steps=3000 --set train.valid_every=500 \
    --set train.save_every=500 --set optim.lr=0.001 --set optim.warmup_steps=100
fi
[ -f "$exp/dual/onnx/encoder.onnx" ] || asr export --checkpoint "$exp/dual/final.pt" --out "$exp/dual/onnx"
asr bench wakeword --model-dir "$plain" --checkpoint "$exp/dual/final.pt" --base-checkpoint "$base" --data "$data" \
  --json "$exp/results.json" --plot "$exp/det.png"
