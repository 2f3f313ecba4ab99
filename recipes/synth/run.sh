#!/usr/bin/env bash
# The embedded-corpus recipe (this is what `make demo` runs): synthesize -> manifests -> fbank ->
# BPE and a token 8-gram language model of the training-side text -> train an LSTM transducer ->
# decode the four held-out-voice test splits (test: commands; test-open: sentences no training text
# holds; test-names: unseen names; test-engine: test-open by a synthesizer training never heard;
# modified beam search, beam 8, with the 8-gram model in shallow fusion) -> results table and results.json
# (test_wer, test_open_wer, test_names_wer, test_engine_wer) -> export ONNX fp32 + int8 for
# sherpa-onnx -> `asr stream` one test file -> latency benchmark (ours vs sherpa-onnx, fp32 vs int8)
# into results.json.
#
# Usage (from the repository root, with the venv's `asr` on PATH):
#   bash recipes/synth/run.sh                                  # all stages, size small, exp/demo
#   bash recipes/synth/run.sh --size mini --exp exp/mini       # 4x less data (faster, worse WER)
#   bash recipes/synth/run.sh --size medium                    # the longer recipe: 4x the data, a Conformer for
#                                                              # an hour, exp/medium (at most 90 min in all)
#   bash recipes/synth/run.sh --speed-perturb 1 --exp exp/sp    # + 0.9x/1.1x copies of train (3x fbank time)
#   bash recipes/synth/run.sh --stage 4 --stop-stage 5         # train + decode only
#   bash recipes/synth/run.sh --size small --exp exp/synth-small --config recipes/synth/lstm.yaml
#   bash recipes/synth/run.sh --set train.max_steps=200        # extra overrides for `asr train`
#   bash recipes/synth/run.sh --stage 6 --bench-utts 1000      # export + stream + benchmark all test utterances
#   bash recipes/synth/run.sh --stage 5 --lm-order 0           # decode without the language model
# Every stage skips work whose output exists, so an interrupted run resumes where it stopped.
set -euo pipefail

stage=0
stop_stage=100
size=small
exp=
config=
vocab_size=32
method=modified_beam_search
beam=8
speed_perturb=0  # on small within the demo's 12.5 min: test WER 12.40 % with, 11.76 % without (RESULTS.md)
bench_utts=100  # stage 8; with 3 engines at 1 and 2 threads this is about 45 s (RESULTS.md has the full runs)
lm_order=8  # token n-gram for shallow fusion (0: none); 8 and scale 0.3 were best on dev (RESULTS.md)
lm_scale=0.3
overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --exp) exp=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --vocab-size) vocab_size=$2; shift 2 ;;
    --decoding-method) method=$2; shift 2 ;;
    --beam) beam=$2; shift 2 ;;
    --speed-perturb) speed_perturb=$2; shift 2 ;;
    --bench-utts) bench_utts=$2; shift 2 ;;
    --lm-order) lm_order=$2; shift 2 ;;
    --lm-scale) lm_scale=$2; shift 2 ;;
    --set) overrides+=(--set "$2"); shift 2 ;;
    *) echo "error: unknown option $1 (see the usage block at the top of $0)" >&2; exit 2 ;;
  esac
done

if [ "$size" = medium ]; then  # the longer recipe (recipes/synth/conformer-medium.yaml)
  exp=${exp:-exp/medium}; config=${config:-recipes/synth/conformer-medium.yaml}
fi
exp=${exp:-exp/demo}; config=${config:-recipes/synth/lstm.yaml}
corpus=data/synth-$size
manifests=data/manifests/synth-$size
fbank=data/fbank/synth-$size
sp_args=()
if [ "$speed_perturb" = 1 ]; then fbank=$fbank-sp; sp_args=(--speed-perturb train); fi
lang=data/lang_bpe_${vocab_size}/synth-$size
lm_text=data/lm/synth-text.txt  # the same for every size: all the text training may use
lm=$lang/lm-$lm_order.npz  # counted in the BPE's tokens, so it lives beside it
tests=(test test-open test-names test-engine)
t_start=$(date +%s)
log() { echo "[$(($(date +%s) - t_start)) s] $*"; }

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  log "stage 0: synthesize the $size corpus into $corpus"
  asr prepare synth --size "$size" --out "$corpus"
fi
if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "stage 1: lhotse manifests into $manifests"
  [ -f "$manifests/cuts_test-engine.jsonl.gz" ] || asr prepare librispeech --root "$corpus" --out "$manifests" --parts train dev "${tests[@]}"
fi
if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  log "stage 2: fbank features into $fbank"
  asr features --manifests "$manifests" --out "$fbank" --parts train dev "${tests[@]}" "${sp_args[@]}"
fi
if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "stage 3: BPE ($vocab_size) into $lang"
  [ -f "$lang/bpe.model" ] || asr bpe --cuts "$manifests/cuts_train.jsonl.gz" --out "$lang" --vocab-size "$vocab_size"
  if [ "$lm_order" -gt 0 ]; then
    log "stage 3: the language-model text ($lm_text) and its $lm_order-gram model ($lm)"
    [ -f "$lm_text" ] || asr prepare lm-text --out "$lm_text"
    [ -f "$lm" ] || asr prepare lm --text "$lm_text" --bpe-model "$lang/bpe.model" --order "$lm_order" --out "$lm"
  fi
fi
if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "stage 4: train ($config) into $exp"
  if [ -f "$exp/final.pt" ]; then
    log "  $exp/final.pt exists; skipping"
  else
    resume=()
    ls "$exp"/step-*.pt >/dev/null 2>&1 && resume=(--resume)
    asr train --config "$config" "${resume[@]}" \
      --set train.exp_dir="$exp" \
      --set data.train_cuts="$fbank/cuts_train.jsonl.gz" \
      --set data.dev_cuts="$fbank/cuts_dev.jsonl.gz" \
      --set data.bpe_model="$lang/bpe.model" "${overrides[@]}"
  fi
fi
if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  lm_args=()
  [ "$lm_order" -gt 0 ] && [ "$method" = modified_beam_search ] && lm_args=(--lm "$lm" --lm-scale "$lm_scale")
  log "stage 5: decode the held-out-voice test splits ${tests[*]} ($method ${lm_args[*]})"
  test_cuts=(); for t in "${tests[@]}"; do test_cuts+=("$fbank/cuts_$t.jsonl.gz"); done
  asr decode --checkpoint "$exp/final.pt" --cuts "${test_cuts[@]}" --out "$exp/decode" \
    --decoding-method "$method" --beam "$beam" "${lm_args[@]}" --results-json "$exp/results.json"
  log "done; results in $exp/results.json, per-utterance errors in $exp/decode/errs-<split>-$method.txt"
fi
if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "stage 6: export to $exp/onnx (float32 + int8 dynamic, static, accelerator; checked against PyTorch)"
  asr export --checkpoint "$exp/final.pt" --out "$exp/onnx" --int8 dynamic static accelerator \
    --calib "$fbank/cuts_dev.jsonl.gz"
fi
if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  audio=$(find "$corpus/test" -name '*.flac' | sort | sed -n 1p)  # sed reads all: no SIGPIPE under pipefail
  log "stage 7: asr stream $exp/onnx $audio (JSON lines; final results only)"
  asr stream "$exp/onnx" "$audio" --no-partials
  grep -h "^$(basename "$audio" .flac) " "$corpus"/test/*/*/*.trans.txt | sed 's/^/  reference: /'
fi
if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  log "stage 8: latency benchmark on $bench_utts test utterances (asr stream vs sherpa-onnx, fp32 vs int8)"
  asr bench latency --model-dir "$exp/onnx" --audio-dir "$corpus/test" --max-utts "$bench_utts" \
    --engines onnx-fp32 onnx-int8-dynamic sherpa-onnx-fp32 \
    --json "$exp/latency.json" --plot "$exp/latency.png" --results-json "$exp/results.json"
  log "done; $exp/results.json, $exp/latency.json, $exp/latency.png"
fi
