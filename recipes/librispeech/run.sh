#!/usr/bin/env bash
# LibriSpeech recipe: download -> manifests -> fbank -> BPE -> train -> decode, each stage resumable.
#
# Usage (from the repository root, with the venv's `asr` on PATH):
#   bash recipes/librispeech/run.sh --root download/LibriSpeech               # stages 0-5
#   bash recipes/librispeech/run.sh --stage 1 --root /data/LibriSpeech         # skip the download
#   bash recipes/librispeech/run.sh --stage 4 --stop-stage 4 --set train.max_steps=100000
#   bash recipes/librispeech/run.sh --root data/synth-mini --parts "train dev test" \
#       --train-part train --dev-part dev --test-parts test --vocab-size 128  # any LibriSpeech-layout tree
# Stage 0 needs internet (openslr.org); every other stage runs offline.
set -euo pipefail

stage=0
stop_stage=100
root=download/LibriSpeech
parts="train-clean-100 dev-clean test-clean test-other"
train_part=train-clean-100
dev_part=dev-clean
test_parts="test-clean test-other"
vocab_size=500
config=recipes/librispeech/lstm.yaml
exp=exp/librispeech-lstm
tag=librispeech
method=modified_beam_search
overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --root) root=$2; shift 2 ;;
    --parts) parts=$2; shift 2 ;;
    --train-part) train_part=$2; shift 2 ;;
    --dev-part) dev_part=$2; shift 2 ;;
    --test-parts) test_parts=$2; shift 2 ;;
    --vocab-size) vocab_size=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --exp) exp=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --decoding-method) method=$2; shift 2 ;;
    --set) overrides+=(--set "$2"); shift 2 ;;
    *) echo "error: unknown option $1 (see the usage block at the top of $0)" >&2; exit 2 ;;
  esac
done
manifests=data/manifests/$tag
fbank=data/fbank/$tag
lang=data/lang_bpe_${vocab_size}/$tag

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "stage 0: download $parts into $(dirname "$root") (needs internet)"
  mkdir -p "$(dirname "$root")"
  for part in $parts; do
    [ -d "$root/$part" ] && continue
    curl -fL "https://www.openslr.org/resources/12/$part.tar.gz" | tar -xz -C "$(dirname "$root")"
  done
fi
if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "stage 1: lhotse manifests into $manifests"
  todo=""
  for part in $parts; do [ -f "$manifests/cuts_$part.jsonl.gz" ] || todo="$todo $part"; done
  [ -z "$todo" ] || asr prepare librispeech --root "$root" --out "$manifests" --parts $todo
fi
if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  echo "stage 2: fbank into $fbank ($train_part with speed perturbation)"
  asr features --manifests "$manifests" --out "$fbank" --parts $parts --speed-perturb "$train_part"
fi
if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  echo "stage 3: BPE $vocab_size into $lang"
  [ -f "$lang/bpe.model" ] || asr bpe --cuts "$manifests/cuts_$train_part.jsonl.gz" --out "$lang" --vocab-size "$vocab_size"
fi
if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "stage 4: train $config into $exp"
  if [ ! -f "$exp/final.pt" ]; then
    resume=()
    ls "$exp"/step-*.pt >/dev/null 2>&1 && resume=(--resume)
    asr train --config "$config" "${resume[@]}" --set train.exp_dir="$exp" \
      --set data.train_cuts="$fbank/cuts_$train_part.jsonl.gz" --set data.dev_cuts="$fbank/cuts_$dev_part.jsonl.gz" \
      --set data.bpe_model="$lang/bpe.model" "${overrides[@]}"
  fi
fi
if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  for part in $test_parts; do
    echo "stage 5: decode $part ($method)"
    asr decode --checkpoint "$exp/final.pt" --cuts "$fbank/cuts_$part.jsonl.gz" --out "$exp/decode" --decoding-method "$method"
  done
fi
