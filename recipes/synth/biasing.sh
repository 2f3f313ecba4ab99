#!/usr/bin/env bash
# Contextual biasing on the synth corpus (recipes/synth/RESULTS.md, "Contextual biasing"): bias lists for
# the test-names split (its names are never in the training text) by Le et al.'s procedure, a biasing
# adapter (character phrase encoder, guided-attention loss) trained on top of a frozen transducer, the
# same with the semantic phrase encoder (a character language model trained on the corpus's LM text by
# `asr train-lm`), then `asr bench biasing`: no biasing, hotwords, each adapter, and each with hotwords,
# at each list size, with and without the true names. Writes exp/biasing/results.json.
#
# Usage (from the repository root, with the venv's `asr` on PATH, after `make demo` or recipes/synth/run.sh):
#   bash recipes/synth/biasing.sh                                # adapter on exp/demo/final.pt, 12 minutes
#   bash recipes/synth/biasing.sh --base exp/conformer/final.pt --config exp/conformer/config.yaml --minutes 30
# Every stage skips work whose output exists.
set -euo pipefail

size=small
base=exp/demo/final.pt
config=exp/demo/config.yaml
minutes=12
exp=exp/biasing
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --minutes) minutes=$2; shift 2 ;;
    --exp) exp=$2; shift 2 ;;
    *) echo "error: unknown option $1 (see the usage block at the top of $0)" >&2; exit 2 ;;
  esac
done
for f in "$base" "$config"; do
  [ -f "$f" ] || { echo "error: $f not found; train the transducer first (make demo, or recipes/synth/run.sh)" >&2; exit 2; }
done

corpus=data/synth-$size
lists=data/bias/synth-$size
if [ ! -f "$lists/test-names.biasing_500.tsv" ]; then
  asr prepare bias-lists --train "$corpus/train" --parts "$corpus/test-names" "$corpus/test" --out "$lists"
fi
if [ ! -f "$exp/adapter/final.pt" ]; then
  # the adapter alone learns (the transducer frozen); on the 2-core EPYC the time limit ends the run near step 2600
  asr train --config "$config" --set model.biasing.type=acoustic --set model.biasing.attention_loss=1.0 \
    --set train.init_from="$base" --set train.trainable=biasing --set train.exp_dir="$exp/adapter" \
    --set train.max_minutes="$minutes" --set train.max_steps=4000 --set train.valid_every=500 \
    --set train.save_every=500 --set optim.lr=0.003 --set optim.warmup_steps=100
fi
lm_text=data/lm/synth-text.txt
[ -f "$lm_text" ] || asr prepare lm-text --out "$lm_text"
[ -f "$exp/phrase-lm/lm.pt" ] || asr train-lm --text "$lm_text" --out "$exp/phrase-lm/lm.pt" --minutes 10
if [ ! -f "$exp/semantic/final.pt" ]; then
  asr train --config "$config" --set model.biasing.type=acoustic+semantic --set model.biasing.attention_loss=1.0 \
    --set model.biasing.semantic_lm="$exp/phrase-lm/lm.pt" \
    --set train.init_from="$base" --set train.trainable=biasing --set train.exp_dir="$exp/semantic" \
    --set train.max_minutes="$minutes" --set train.max_steps=4000 --set train.valid_every=500 \
    --set train.save_every=500 --set optim.lr=0.003 --set optim.warmup_steps=100
fi
asr bench biasing --base "$base" --checkpoint "$exp/adapter/final.pt" --semantic-checkpoint "$exp/semantic/final.pt" \
  --cuts "data/fbank/synth-$size/cuts_test-names.jsonl.gz" --lists "$lists" --json "$exp/results.json"
