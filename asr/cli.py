"""``asr <verb>``: the composition root. Each verb parses its options and calls one library function;
tables, results files and checks live with those functions. The only ``asr`` modules that import
``export`` are this one and the benchmarks (``asr.bench``), which sit at the same top layer.

Each verb loads its own stack when it runs (the imports inside the ``_cmd_*`` functions): a process
that streams with onnxruntime should not carry the training stack's memory, and ``asr --help``
should not wait for torch. Those are the only imports of this repository's modules inside functions
(tests/test_architecture.py); ``lint-imports`` sees them all.

Bad input raises :class:`asr.errors.UserError`; :func:`main` prints it as one ``error:`` line and
exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from pathlib import Path

from asr.audio import RAW_FORMAT
from asr.bench import process_env, reexec_with_env
from asr.bounds import Range
from asr.chunking import TAIL_PADDING_S
from asr.decoding.context_graph import SCORE_BOUNDS
from asr.decoding.context_graph import THRESHOLD_BOUNDS as KEYWORD_THRESHOLD_BOUNDS
from asr.decoding.ngram_lm import ORDER_BOUNDS as LM_ORDER_BOUNDS
from asr.decoding.ngram_lm import SCALE_BOUNDS as LM_SCALE_BOUNDS
from asr.data.synth import SIZES
from asr.errors import UserError, os_error_line

SEARCHES = ["greedy", "modified_beam_search"]
# asr transcribe reads and encodes a longer recording block by block (the streaming loop, whose final text
# equals offline decoding's): its memory stays bounded (one hour of audio encoded at once peaked at 3.8 GB)
OFFLINE_MAX_SECONDS = 60
INT8_FLAVOURS = ["dynamic", "static", "accelerator"]  # export.int8.FLAVOURS (a test keeps them equal)
COMPRESSION_METHODS = "s8bqat, gq, qat, aat, csp or magnitude"  # asr.compression.METHODS (a test keeps them equal)
BENCH_HELP = {
    "loss": "pruned RNN-T loss vs torchaudio's full loss: step time and peak memory",
    "emulator": "NNA emulator speed: Numba int8 kernels vs the NumPy reference, BLAS and onnxruntime; emulated RTF",
    "latency": "real-time factor, per-chunk, first-token and user-perceived latency: PyTorch, ONNX fp32, int8, "
               "sherpa-onnx",
    "compression": "every compression method from one float checkpoint: bytes, float / emulated-NNA / onnxruntime "
                   "int8 WER",
    "hotwords": "entity-word recall and WER without and with hotwords; tokens checked against sherpa-onnx",
    "sherpa": "our onnxruntime recognizer vs sherpa-onnx on whole files: equal tokens, WER, RTF",
    "biasing": "contextual biasing on per-utterance bias lists: WER, U-WER, B-WER of no biasing, hotwords and the "
               "biasing adapter, with and without the true words",
    "wakeword": "wake-word false rejects at 0.5 / 1 / 2 false alarms per hour, DET curve and F1: the keyword-graph "
                "baseline (sherpa-onnx's keyword spotter on the plain transducer) and the dual-attention wake-word "
                "model, with its FLOPs per frame and command WER",
    "long-stream": "per-chunk cost minute by minute over an hour-long stream without endpoints, with and without "
                   "settled finals",
    "ancat": "WER beside look-ahead (mean and P90 ms) and emission delay: ANCAT, fixed-chunk and full-context models",
}

COMMON_OPTIONS = """options that mean the same in every verb:
  --checkpoint CKPT         a .pt written by 'asr train' or 'asr compress' (it carries its tokenizer)
  --cuts MANIFEST           a lhotse cut manifest with features ('asr features' writes them)
  --audio-dir DIR           a LibriSpeech-layout folder of flac files and *.trans.txt transcripts
  --model-dir DIR           a folder written by 'asr export' (asr stream takes it as its first argument)
  --decoding-method M       greedy | modified_beam_search, with --beam N
  --chunk-feature-frames N  10 ms feature frames per streaming chunk (sherpa-onnx's decode_chunk_len)
  --bpe-model FILE          a tokenizer other than the checkpoint's own
  --threads N               torch / onnxruntime intra-op threads (default 1)
  --results-json FILE       merge this verb's headline numbers into a results file
"""

EXAMPLES = {
    "prepare": "examples:\n  asr prepare synth --size mini --out data/synth-mini\n"
               "  asr prepare librispeech --root download/LibriSpeech --parts train-clean-100 dev-clean test-clean",
    "features": "example:\n  asr features --manifests data/manifests --out data/fbank --parts train dev test --speed-perturb train",
    "bpe": "example:\n  asr bpe --cuts data/manifests/cuts_train.jsonl.gz --out data/lang_bpe --vocab-size 256",
    "train-lm": "example:\n  asr train-lm --text data/lm/synth-text.txt --out exp/phrase-lm/lm.pt --minutes 10",
    "train": "examples:\n  asr train --config recipes/synth/lstm.yaml\n"
             "  asr train --config recipes/synth/lstm.yaml --set train.max_steps=500 --set optim.lr=1e-3 --resume",
    "decode": "example:\n  asr decode --checkpoint exp/demo/final.pt --cuts data/fbank/cuts_test.jsonl.gz "
              "--out exp/demo/decode --decoding-method modified_beam_search --beam 4",
    "transcribe": "examples:\n  asr transcribe recording.wav --checkpoint exp/demo/final.pt\n"
                  "  asr transcribe recording.wav --checkpoint exp/demo/final.pt --streaming --chunk-feature-frames 32",
    "average": "example:\n  asr average --checkpoints exp/run/step-1500.pt exp/run/step-2000.pt --out exp/run/avg.pt",
    "models": "example:\n  asr models",
    "export": "examples:\n  asr export --checkpoint exp/demo/final.pt --out exp/demo/onnx\n"
              "  asr export --checkpoint exp/demo/final.pt --out exp/demo/onnx-c16 --chunk-feature-frames 16\n"
              "  asr export --checkpoint exp/demo/final.pt --out exp/demo/onnx --int8 dynamic static accelerator",
    "bench": "examples:\n  asr bench loss\n"
             "  asr bench latency --model-dir exp/demo/onnx --audio-dir data/synth-small/test --checkpoint exp/demo/final.pt",
    "bench loss": "example:\n  asr bench loss --repeats 3",
    "bench emulator": "examples:\n  asr bench emulator\n"
                      "  asr bench emulator --checkpoint exp/demo/final.pt --cuts data/fbank/synth-small/cuts_test.jsonl.gz",
    "bench latency": "example:\n  asr bench latency --model-dir exp/demo/onnx --audio-dir data/synth-small/test "
                     "--checkpoint exp/demo/final.pt --json exp/demo/latency.json --plot exp/demo/latency.png",
    "bench compression": "examples:\n  asr bench compression --checkpoint exp/demo/final.pt --cuts "
                         "data/fbank/synth-small/cuts_test.jsonl.gz --audio-dir data/synth-small/test\n"
                         "  asr bench compression --report",
    "bench hotwords": "example:\n  asr bench hotwords --model-dir exp/demo/onnx --audio-dir data/synth-small/test "
                      "--max-utts 1000",
    "bench biasing": "example:\n  asr bench biasing --base exp/demo/final.pt --checkpoint exp/biasing/adapter/final.pt "
                     "--cuts data/fbank/synth-small/cuts_test-names.jsonl.gz --lists data/bias/synth-small",
    "bench long-stream": "example:\n  asr bench long-stream --model-dir exp/demo/onnx --audio-dir data/synth-small/test "
                         "--minutes 60",
    "bench wakeword": "example:\n  asr bench wakeword --model-dir exp/demo/onnx --checkpoint exp/wakeword/dual/final.pt "
                      "--base-checkpoint exp/biasing/adapter/final.pt --data data/wakeword --json "
                      "exp/wakeword/results.json --plot exp/wakeword/det.png",
    "bench ancat": "example:\n  asr bench ancat --checkpoints exp/ancat/final.pt exp/conformer/final.pt --reference "
                   "exp/full/final.pt --cuts data/fbank/synth-small/cuts_test-open.jsonl.gz --json exp/ancat/results.json",
    "bench sherpa": "example:\n  asr bench sherpa --model-dir exp/demo/onnx --audio-dir data/synth-small/test --beam 8",
    "compress": "examples:\n  asr compress --method s8bqat --checkpoint exp/demo/final.pt --config recipes/synth/compress-s8bqat.yaml\n"
                "  asr compress --method csp --checkpoint exp/demo/final.pt --set compression.sparsity=0.5 --exp-dir exp/csp50",
    "emulate": "examples:\n  asr emulate --checkpoint exp/demo/final.pt --cuts data/fbank/synth-small/cuts_test.jsonl.gz\n"
               "  asr emulate --checkpoint exp/demo/final.pt --cuts data/fbank/synth-small/cuts_test.jsonl.gz "
               "--profile onnxruntime --decoding-method modified_beam_search",
    "kws": "examples:\n"
           "  asr kws exp/demo/onnx recording.wav --keywords-file keywords.txt\n"
           "  asr kws exp/demo/onnx a.wav b.flac --keywords-file keywords.txt --keywords-threshold 0.3",
    "stream": "examples:\n"
              "  asr stream exp/demo/onnx recording.wav\n"
              "  asr stream exp/demo/onnx a.wav b.flac c.wav --no-partials\n"
              "  asr stream exp/demo/onnx recording.wav --decoding-method modified_beam_search --hotwords-file hotwords.txt "
              "--hotwords-score 2.0\n"
              "  asr stream exp/demo/onnx - --rule2-min-trailing-silence 0.8",
}


def _search_options(p: argparse.ArgumentParser, lm: bool = True) -> None:
    p.add_argument("--decoding-method", default="greedy", choices=SEARCHES)
    p.add_argument("--beam", type=int, default=4, help="active paths of modified beam search (default %(default)s)")
    if lm:
        p.add_argument("--lm", default=None, metavar="NPZ",
                       help="shallow fusion with a token n-gram model written by 'asr prepare lm' (modified beam search)")
        p.add_argument("--lm-scale", type=float, default=0.3,
                       help="weight of the n-gram log-probabilities in the search score (default %(default)s)")


def _lm_fusion(args):
    """The --lm and --lm-scale options as an ``LmFusion`` (None without --lm)."""
    from asr.decoding.ngram_lm import LmFusion, NgramLm  # lazy: only verbs that search

    if args.lm is None:
        return None
    if args.decoding_method != "modified_beam_search":
        raise UserError(f"--lm {args.lm} needs --decoding-method modified_beam_search (greedy search cannot fuse a "
                        "language model, as in icefall)")
    return LmFusion(NgramLm.load(args.lm), args.lm_scale)


def _threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default %(default)s: on a busy machine "
                                                          "more threads are often slower)")


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error contract: one ``error:`` line and exit status 2, naming the verb
    and where its options are listed (argparse's own error prints the usage block first)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message}; see '{self.prog} --help'\n")


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = _Parser(
        prog="asr", formatter_class=fmt,
        description="ondevice-asr: train, compress, export and stream on-device transducers.",
        epilog="example (the whole demo: data, features, BPE, training, decoding, export, streaming):\n  make demo\n\n"
               + COMMON_OPTIONS + "\nrun 'asr <verb> --help' for each verb's options and examples",
    )
    verbs = p.add_subparsers(dest="verb", metavar="<verb>", required=True)

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        return verbs.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES[name],
                                formatter_class=fmt)

    prep = verb("prepare", "make a corpus and/or its lhotse manifests")
    corpora = prep.add_subparsers(dest="corpus", metavar="<corpus>", required=True)
    synth = corpora.add_parser("synth", help="synthesize the embedded corpus (espeak-ng, flite, festival)",
                               epilog="example:\n  asr prepare synth --size mini --out data/synth-mini", formatter_class=fmt)
    synth.add_argument("--size", default="mini", choices=list(SIZES),
                       help="utterances per split (" + "/".join(next(iter(SIZES.values()))) + "): "
                       + "; ".join(f"{k} " + "/".join(map(str, v.values())) for k, v in SIZES.items()) + " (tiny: for tests)")
    synth.add_argument("--out", required=True, help="output folder (LibriSpeech layout)")
    synth.add_argument("--seed", type=int, default=0)
    libri = corpora.add_parser("librispeech", help="lhotse manifests from a local LibriSpeech-layout tree",
                               epilog="example:\n  asr prepare librispeech --root download/LibriSpeech --out data/manifests",
                               formatter_class=fmt)
    libri.add_argument("--root", required=True, help="folder holding the parts (train-clean-100/, dev-clean/, ...)")
    libri.add_argument("--parts", nargs="*", default=None, help="parts to prepare (default: all found)")
    libri.add_argument("--out", default="data/manifests", help="manifest folder (default: %(default)s)")
    bias = corpora.add_parser("bias-lists", help="per-utterance bias lists (rare words + distractors, Le et al. 2021)",
                              epilog="example:\n  asr prepare bias-lists --train data/synth-small/train --parts "
                                     "data/synth-small/test-names data/synth-small/test --out data/bias/synth-small",
                              formatter_class=fmt)
    bias.add_argument("--train", nargs="+", required=True, help="training part(s), LibriSpeech layout: their text "
                      "ranks the words")
    bias.add_argument("--parts", nargs="+", required=True, help="the parts to build lists for, LibriSpeech layout")
    bias.add_argument("--top-k", type=int, default=1000,
                      help="words outside the K most frequent training words are rare (default %(default)s; "
                           "5000 on LibriSpeech, as in Le et al.)")
    bias.add_argument("--sizes", type=int, nargs="+", default=[0, 10, 100, 500],
                      help="list sizes N: each utterance's rare words padded with distractors to N words, as in "
                           "fbai-speech's lists (0: the rare words alone; default 0 10 100 500)")
    bias.add_argument("--seed", type=int, default=0)
    bias.add_argument("--hard-distractors", action="store_true",
                      help="distractors that sound like each utterance's bias words (espeak-ng phonemes, edit "
                           "distance), as Le et al.'s hard lists, instead of random rare words")
    bias.add_argument("--out", required=True, help="folder for <part>.biasing_<N>.tsv (fbai-speech's format)")
    ww = corpora.add_parser("wakeword", help="wake-word data: the wake word then a command, phonetic confusables, "
                            "speech without it, by the corpus's voices (held-out voices for test)",
                            epilog="example:\n  asr prepare wakeword --out data/wakeword --word zephyra --size small",
                            formatter_class=fmt)
    ww.add_argument("--out", required=True, help="output folder (corpus layout, plus wakeword.tsv per split)")
    ww.add_argument("--word", default="zephyra", help="the wake word: a word the corpus's training text does not hold "
                    "(default %(default)s)")
    ww.add_argument("--size", default="small", choices=["tiny", "small"],
                    help="utterances per split: tiny 12/6/12 (tests), small 6000/600/2000 (default %(default)s)")
    ww.add_argument("--seed", type=int, default=0)
    lmt = corpora.add_parser("lm-text", help="the synthetic corpus's language-model text: every sentence training may "
                             "use (no dev or test sentence, no held-out name)",
                             epilog="example:\n  asr prepare lm-text --out data/lm/synth-text.txt", formatter_class=fmt)
    lmt.add_argument("--out", required=True, help="text file, one upper-cased sentence a line")
    lmt.add_argument("--commands", type=int, default=100_000, help="filled command templates (default %(default)s)")
    lmt.add_argument("--seed", type=int, default=0)
    lm = corpora.add_parser("lm", help="count a token n-gram model (Kneser-Ney) for shallow fusion (--lm in decode, "
                            "transcribe and stream)",
                            epilog="example:\n  asr prepare lm --text data/lm/synth-text.txt --bpe-model "
                                   "data/lang_bpe_32/synth-small/bpe.model --order 8 --out data/lm/synth-small/lm-8.npz",
                            formatter_class=fmt)
    lm.add_argument("--text", nargs="+", required=True, help="UTF-8 text file(s), one sentence a line (upper-cased "
                    "when read, as transcripts are)")
    lm.add_argument("--bpe-model", required=True, help="the transducer's tokenizer: the model counts its tokens")
    lm.add_argument("--order", type=int, default=8, help="n-gram order in tokens (default %(default)s: about a word "
                    "and a half of a 32-token vocabulary)")
    lm.add_argument("--dev-text", default=None, help="also print the model's token perplexity on these lines")
    lm.add_argument("--out", required=True, help="the model file (.npz)")

    feats = verb("features", "compute and cache 80-dim kaldi fbank features (the sherpa-onnx front end)")
    feats.add_argument("--manifests", default="data/manifests")
    feats.add_argument("--out", default="data/fbank")
    feats.add_argument("--parts", nargs="+", required=True)
    feats.add_argument("--speed-perturb", nargs="*", default=[], help="parts that get 0.9x/1.1x speed copies")

    bpe = verb("bpe", "train the sentencepiece BPE tokenizer on training transcripts; writes bpe.model and tokens.txt")
    bpe.add_argument("--cuts", required=True, help="training cut manifest (its supervision texts are used)")
    bpe.add_argument("--out", default="data/lang_bpe")
    bpe.add_argument("--vocab-size", type=int, default=256)

    tr = verb("train", "train a transducer from a YAML config")
    tr.add_argument("--config", required=True)
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    tr.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in train.exp_dir")
    tr.add_argument("--force", action="store_true", help="train a new run into a train.exp_dir that holds a finished "
                                                         "or started one (its checkpoints are deleted)")

    tlm = verb("train-lm", "train the character language model of semantic biasing on text alone "
                           "(model.biasing.type: acoustic+semantic reads it)")
    tlm.add_argument("--text", nargs="+", required=True, help="UTF-8 text file(s), one sentence a line (e.g. what "
                     "'asr prepare lm-text' writes)")
    tlm.add_argument("--out", required=True, help="the model file to write")
    tlm.add_argument("--minutes", type=float, default=10.0, help="training time (default %(default)s)")
    tlm.add_argument("--max-steps", type=int, default=100_000, help="(default %(default)s)")
    tlm.add_argument("--hidden-dim", type=int, default=256, help="(default %(default)s)")
    tlm.add_argument("--layers", type=int, default=1, help="(default %(default)s)")
    tlm.add_argument("--seed", type=int, default=0)
    _threads_option(tlm)

    comp = verb("compress", "fine-tune a float checkpoint into a compressed one (sub-8-bit, int8 QAT, pruning) "
                            "through the training loop; writes final.pt with the converted model")
    comp.add_argument("--method", required=True, help=f"the compression method: {COMPRESSION_METHODS}")
    comp.add_argument("--checkpoint", required=True, metavar="CKPT", help="the float checkpoint (e.g. exp/demo/final.pt)")
    comp.add_argument("--config", default=None, help="YAML with a compression: section and train/optim overrides; "
                      "without it: 15 %% of the float run's steps at 0.1x its learning rate")
    comp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a value, e.g. compression.bits=3")
    comp.add_argument("--exp-dir", default=None, help="output folder (default: train.exp_dir, else <CKPT dir>/compress-<method>)")
    comp.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the output folder")
    comp.add_argument("--force", action="store_true", help="start anew in an output folder that holds a finished or "
                                                           "started run (its checkpoints are deleted)")

    dec = verb("decode", "decode cut manifests and write recogs/errs/wer files")
    dec.add_argument("--checkpoint", required=True)
    dec.add_argument("--cuts", required=True, nargs="+", metavar="CUTS",
                     help="one or more cut manifests, cuts_<set>.jsonl.gz (each scored on its own, as <set>_wer)")
    dec.add_argument("--out", required=True)
    _search_options(dec)
    _threads_option(dec)
    dec.add_argument("--bpe-model", default=None, help="default: the tokenizer the checkpoint carries")
    dec.add_argument("--results-json", default=None,
                     help="merge <set>_wer for each set (test_wer, test_open_wer, ...), params, train_minutes, decode_rtf into this JSON")
    dec.add_argument("--delay-reference", default=None, metavar="CKPT",
                     help="also report the symbol delay against this model's forced alignment in full context")
    dec.add_argument("--bias-lists", nargs="+", default=None, metavar="TSV",
                     help="per-utterance bias lists, one file per --cuts in the same order (fbai-speech's format, "
                          "'asr prepare bias-lists'): a model with a biasing adapter decodes each utterance with its "
                          "list; every model is scored by U-WER and B-WER (<set>_u_wer, <set>_b_wer)")

    trn = verb("transcribe", "decode one audio file (prints partial results with --streaming)")
    trn.add_argument("audio")
    trn.add_argument("--checkpoint", required=True)
    trn.add_argument("--streaming", action="store_true", help="stateful chunk-by-chunk decoding with partial results")
    trn.add_argument("--chunk-feature-frames", type=int, default=None,
                     help="feature frames per chunk (sherpa-onnx's decode_chunk_len; default: a Conformer's own chunk, "
                          "else 32)")
    _search_options(trn)
    _threads_option(trn)
    trn.add_argument("--bpe-model", default=None, help="default: the tokenizer the checkpoint carries")
    trn.add_argument("--bias-list", default=None, metavar="FILE",
                     help="bias phrases, one a line (names, contacts, titles), for a checkpoint with a biasing adapter "
                          "(model.biasing)")

    avg = verb("average", "average the weights of several checkpoints")
    avg.add_argument("--checkpoints", nargs="+", required=True)
    avg.add_argument("--out", required=True)

    emu = verb("emulate", "lower an LSTM transducer to the int8 NNA emulator and compare its WER with float")
    emu.add_argument("--checkpoint", required=True)
    emu.add_argument("--cuts", required=True, help="cut manifest to decode (e.g. the test split)")
    emu.add_argument("--calib", default=None, help="cut manifest for activation ranges (default: the config's dev cuts)")
    emu.add_argument("--num-calib", type=int, default=100, help="calibration utterances (default: %(default)s)")
    emu.add_argument("--profile", default="fixed_point", choices=["fixed_point", "onnxruntime"],
                     help="requantization rule of the target NNA (default: %(default)s)")
    emu.add_argument("--backend", default="numba", choices=["numba", "reference"])
    _search_options(emu, lm=False)
    _threads_option(emu)
    emu.add_argument("--chunk-feature-frames", type=int, default=32,
                     help="feature frames per streaming chunk (0 = whole utterance)")
    emu.add_argument("--logits-bits", type=int, default=8, choices=[8, 16], help="joiner output format")
    emu.add_argument("--out", default=None, help="folder for recogs/errs files (default: <checkpoint dir>/emulate)")
    emu.add_argument("--bpe-model", default=None, help="default: the tokenizer the checkpoint carries")
    emu.add_argument("--results-json", default=None, help="merge nna_wer and float_wer into this JSON")

    exp = verb("export", "export a transducer to ONNX for sherpa-onnx and onnxruntime (checked against PyTorch)")
    exp.add_argument("--checkpoint", required=True)
    exp.add_argument("--out", required=True, help="folder for encoder/decoder/joiner.onnx, tokens.txt, bpe.model")
    exp.add_argument("--chunk-feature-frames", type=int, default=None,
                     help="feature frames the stream advances per encoder call (decode_chunk_len; default: 32, "
                          "a Conformer's own chunk)")
    exp.add_argument("--bpe-model", default=None, help="default: the tokenizer the checkpoint carries")
    exp.add_argument("--int8", nargs="+", default=[], choices=INT8_FLAVOURS,
                     help="also write these int8 flavours, each a complete model folder OUT/int8-<flavour> "
                          "(see export/int8.py)")
    exp.add_argument("--calib", default=None,
                     help="cut manifest the static flavours calibrate on and every flavour's SNR is measured on "
                          "(default: the checkpoint's dev cuts)")
    exp.add_argument("--num-calib", type=int, default=50,
                     help="calibration utterances; the last 20%% only measure the encoder SNR (default %(default)s)")

    st = verb("stream", "streaming recognition of audio files or live raw PCM on stdin with an exported model (JSON lines)")
    st.add_argument("model_dir", help="folder written by 'asr export' (encoder/decoder/joiner.onnx, tokens.txt, bpe.model)")
    st.add_argument("inputs", nargs="+", metavar="INPUT",
                    help=f"wav/flac files (16 kHz, mono), decoded together; or '-' for {RAW_FORMAT} on stdin, e.g. "
                         "'arecord -q -f S16_LE -r 16000 -c 1 -t raw | asr stream MODEL_DIR -'")
    _search_options(st)
    st.add_argument("--hotwords-file", default=None,
                    help="one phrase per line, optionally followed by ':SCORE' (sherpa-onnx's format); "
                         "needs --decoding-method modified_beam_search")
    st.add_argument("--hotwords-score", type=float, default=1.5,
                    help="per-token bonus of phrases without their own score (default %(default)s)")
    st.add_argument("--bias-list", default=None, metavar="FILE",
                    help="bias phrases, one a line, for a folder exported from a biasing model (bias_encoder.onnx); "
                         "encoded once, used by every stream")
    st.add_argument("--wake-word", action="store_true",
                    help="print wake events ({\"type\": \"wake\", ...} lines) of a folder exported from a wake-word model")
    st.add_argument("--wake-threshold", type=float, default=0.5,
                    help="smoothed detector probability at which a wake event fires (default %(default)s)")
    st.add_argument("--wake-window", type=int, default=3, metavar="FRAMES",
                    help="encoder frames (40 ms) the detector's probabilities are averaged over (default %(default)s)")
    st.add_argument("--wake-refractory", type=int, default=25, metavar="FRAMES",
                    help="encoder frames after a wake event in which no other fires (default %(default)s: 1 s)")
    st.add_argument("--endpoint", action=argparse.BooleanOptionalAction, default=True,
                    help="split the stream into segments at trailing silence (default: on)")
    st.add_argument("--rule1-min-trailing-silence", type=float, default=2.4, metavar="SECONDS",
                    help="rule1: end a segment after this much trailing silence, even if nothing was decoded "
                         "(default %(default)s)")
    st.add_argument("--rule2-min-trailing-silence", type=float, default=1.2, metavar="SECONDS",
                    help="rule2: end a segment after this much trailing silence once something was decoded "
                         "(default %(default)s)")
    st.add_argument("--rule3-min-utterance-length", type=float, default=20.0, metavar="SECONDS",
                    help="rule3: end a segment when it is this long (default %(default)s)")
    st.add_argument("--max-segment-length", type=float, default=20.0, metavar="SECONDS",
                    help="a segment this long without an endpoint ends at its last word that later audio cannot "
                         "change (reason 'settled'), without resetting the decoder, so results stay short on "
                         "an unendpointed stream; 0: never (default %(default)s)")
    st.add_argument("--tail-padding", type=float, default=TAIL_PADDING_S, metavar="SECONDS",
                    help="zeros appended to each input, as sherpa-onnx's examples do (default %(default)s)")
    _threads_option(st)

    kw = verb("kws", "keyword spotting with an exported model and a keywords file, as sherpa-onnx's keyword spotter "
                     "(JSON lines, one per detection)")
    kw.add_argument("model_dir", help="folder written by 'asr export'")
    kw.add_argument("inputs", nargs="+", metavar="INPUT",
                    help=f"wav/flac files (16 kHz, mono); or '-' for {RAW_FORMAT} on stdin (a live microphone)")
    kw.add_argument("--keywords-file", required=True,
                    help="one keyword a line, as text or as the model's tokens, each optionally followed by ':BOOST', "
                         "'#THRESHOLD' and '@NAME' (sherpa-onnx's format; see asr/decoding/keywords.py)")
    kw.add_argument("--keywords-score", type=float, default=1.0,
                    help="per-token boost of keywords without their own ':BOOST' (default %(default)s)")
    kw.add_argument("--keywords-threshold", type=float, default=0.25,
                    help="mean token probability at which a keyword without its own '#THRESHOLD' triggers "
                         "(default %(default)s)")
    kw.add_argument("--max-active-paths", type=int, default=4, help="beam of the search (default %(default)s)")
    kw.add_argument("--num-trailing-blanks", type=int, default=1,
                    help="blank frames after a keyword before it triggers: more than this many (default %(default)s)")
    _threads_option(kw)
    st.add_argument("--partials", action=argparse.BooleanOptionalAction, default=True,
                    help="print partial results as they change (default: on)")

    bench = verb("bench", "benchmarks that run several engines or methods side by side and print one table")
    kinds = bench.add_subparsers(dest="benchmark", metavar="<benchmark>", required=True)
    benches = {name: kinds.add_parser(name, help=text, description=text, epilog=EXAMPLES[f"bench {name}"],
                                      formatter_class=fmt) for name, text in BENCH_HELP.items()}
    _bench_options(benches)

    verb("models", "list the named model presets and the encoder types")
    return p


def _bench_options(p: dict[str, argparse.ArgumentParser]) -> None:
    loss = p["loss"]
    loss.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    loss.add_argument("--repeats", type=int, default=3)
    loss.add_argument("--s-range", type=int, default=5)
    loss.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")

    emu = p["emulator"]
    emu.add_argument("--repeat", type=int, default=30)
    emu.add_argument("--checkpoint", default=None, help="time this LSTM transducer (default: the demo architecture, untrained)")
    emu.add_argument("--cuts", default=None, help="utterances for --checkpoint (default: its dev cuts)")
    emu.add_argument("--num-utts", type=int, default=30)

    lat = p["latency"]
    lat.description = ("Replays each test utterance as a live microphone session (100 ms pieces, then silence until an "
                       "endpoint) on every engine; see asr/bench/latency.py for the definitions.")
    lat.add_argument("--model-dir", required=True, help="what 'asr export' wrote (int8-* subfolders are benchmarked too)")
    lat.add_argument("--audio-dir", required=True, help="LibriSpeech-layout folder of flac files and transcripts")
    lat.add_argument("--checkpoint", default=None, help="also run this checkpoint in PyTorch (pytorch-fp32)")
    lat.add_argument("--max-utts", type=int, default=100, help="first N utterances (default %(default)s)")
    _search_options(lat, lm=False)
    lat.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                     help="thread counts for the RTF columns; latency percentiles use the first (default 1 2)")
    lat.add_argument("--max-silence", type=float, default=3.0, help="seconds of silence fed after each utterance")
    lat.add_argument("--engines", nargs="+", default=None, help="a subset, e.g. onnx-fp32 sherpa-onnx-fp32")
    lat.add_argument("--json", default=None, help="write one object per engine to this JSON file")
    lat.add_argument("--plot", default=None, help="write box plots of the latency distributions to this PNG")
    lat.add_argument("--results-json", default=None,
                     help="merge onnx_fp32_wer, onnx_int8_wer, int8/fp32_encoder_bytes, stream_rtf, sherpa_rtf, "
                          "sherpa_tokens_match into this JSON")

    an = p["ancat"]
    an.add_argument("--checkpoints", nargs="+", required=True, help="ANCAT, Conformer (fixed chunk or full context) "
                    "or other transducer checkpoints, a row each")
    an.add_argument("--cuts", required=True, help="the test cut manifest (with features)")
    an.add_argument("--reference", default=None, help="a full-context model: the emission delay is measured against "
                    "its forced alignment")
    an.add_argument("--max-utts", type=int, default=0, help="first N utterances (0: all)")
    an.add_argument("--max-duration", type=float, default=120.0, help="seconds of audio per batch (default %(default)s)")
    an.add_argument("--threads", type=int, default=1)
    an.add_argument("--json", default=None, help="write the rows to this JSON file (e.g. exp/ancat/results.json)")

    comp = p["compression"]
    comp.add_argument("--checkpoint", help="the float checkpoint every method starts from")
    comp.add_argument("--cuts", help="the test cut manifest (with features)")
    comp.add_argument("--out", default="exp/compression")
    comp.add_argument("--runs", nargs="+", default=None,
                      help="which runs (asr/bench/compression.py's RUNS, one recipe each; default: all)")
    comp.add_argument("--max-utts", type=int, default=0, help="decode only the first N test utterances (0: all)")
    _search_options(comp, lm=False)
    comp.add_argument("--num-calib", type=int, default=100, help="dev utterances that calibrate the NNA's activation ranges")
    comp.add_argument("--retrain", action="store_true", help="fine-tune again even if a finished run is there")
    comp.add_argument("--audio-dir", default=None,
                      help="the test set as a LibriSpeech-layout folder (e.g. data/synth-small/test): adds the "
                           "onnxruntime int8 WER")
    comp.add_argument("--ort-int8", default="dynamic", choices=INT8_FLAVOURS,
                      help="the asr export --int8 flavour onnxruntime decodes (default dynamic: onnxruntime's CPU int8)")
    comp.add_argument("--report", action="store_true", help="only print the table of the results file (--out) and exit")
    comp.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                      help="only print the paired-bootstrap intervals of RUN_A's WER minus RUN_B's (float and emulated "
                           "NNA) from their decodes under --out (fp32 is the float model) and exit")
    comp.add_argument("--reuse-baseline", action="store_true",
                      help="take the fp32 and int8-PTQ rows from the results file instead of decoding them again")

    hot = p["hotwords"]
    hot.add_argument("--model-dir", required=True, help="asr export output (with bpe.model)")
    hot.add_argument("--audio-dir", required=True, help="LibriSpeech-layout synth split, e.g. data/synth-small/test")
    hot.add_argument("--max-utts", type=int, default=0, help="first N utterances (0: all)")
    hot.add_argument("--beam", type=int, default=4)
    hot.add_argument("--scores", type=float, nargs="+", default=[0.5, 1.5], help="per-token hotword bonuses to try")
    hot.add_argument("--sherpa-utts", type=int, default=100, help="compare tokens with sherpa-onnx on the first N (0: skip)")

    bi = p["biasing"]
    bi.add_argument("--base", required=True, help="the transducer without biasing (the one the biasing run started from)")
    bi.add_argument("--checkpoint", required=True, help="the transducer with its biasing adapter (model.biasing)")
    bi.add_argument("--semantic-checkpoint", default=None, help="the same with the semantic phrase encoder "
                    "(model.biasing.type: acoustic+semantic): adds its rows")
    bi.add_argument("--cuts", required=True, help="the test cut manifest with features, cuts_<part>.jsonl.gz")
    bi.add_argument("--lists", required=True, help="the folder of <part>.biasing_<N>.tsv ('asr prepare bias-lists')")
    bi.add_argument("--sizes", type=int, nargs="+", default=[0, 10, 100, 500], help="list sizes N (default 0 10 100 500)")
    bi.add_argument("--beam", type=int, default=4)
    bi.add_argument("--hotwords-score", type=float, default=1.5, help="hotwords bonus per token (default %(default)s)")
    bi.add_argument("--max-utts", type=int, default=0, help="first N utterances (0: all)")
    bi.add_argument("--threads", type=int, default=1)
    bi.add_argument("--json", default=None, help="write the rows to this JSON file (e.g. exp/biasing/results.json)")

    ls = p["long-stream"]
    ls.add_argument("--model-dir", required=True, help="what 'asr export' wrote")
    ls.add_argument("--audio-dir", required=True, help="LibriSpeech-layout folder whose utterances make the stream")
    ls.add_argument("--max-utts", type=int, default=0, help="first N utterances (0: all)")
    ls.add_argument("--beam", type=int, default=4)
    ls.add_argument("--minutes", type=float, default=60, help="length of the stream with settled finals (default %(default)s)")
    ls.add_argument("--unbounded-minutes", type=float, default=10,
                    help="length of the stream without them (default %(default)s)")
    ls.add_argument("--max-segment-length", type=float, default=20.0, metavar="SECONDS",
                    help="as in 'asr stream' (default %(default)s)")
    ls.add_argument("--json", default=None, help="write the rows, with each minute's cost, to this JSON file")

    wk = p["wakeword"]
    wk.add_argument("--model-dir", default=None, help="the keyword-graph baseline: what 'asr export' wrote for a plain "
                    "transducer")
    wk.add_argument("--checkpoint", default=None, help="a dual-attention wake-word model (model.wakeword)")
    wk.add_argument("--base-checkpoint", default=None, help="the biasing model --checkpoint was fine-tuned from: its "
                    "command WER beside the wake-word model's")
    wk.add_argument("--window", type=int, default=3, help="frames the detector's probabilities are averaged over "
                    "(default %(default)s)")
    wk.add_argument("--refractory", type=int, default=25, help="frames after a wake event in which no other fires "
                    "(default %(default)s: 1 s)")
    wk.add_argument("--list-size", type=int, default=100, help="phrases of the full branch when its FLOPs are counted "
                    "(default %(default)s)")
    wk.add_argument("--data", required=True, help="what 'asr prepare wakeword' wrote")
    wk.add_argument("--split", default="test", choices=["train", "dev", "test"], help="(default %(default)s)")
    wk.add_argument("--negatives", nargs="*", default=[],
                    help="more wake-word-free LibriSpeech-layout folders (e.g. data/synth-small/test): false alarms per hour")
    wk.add_argument("--keywords-score", type=float, default=1.0, help="the keyword's per-token boost (default %(default)s)")
    wk.add_argument("--max-active-paths", type=int, default=4)
    wk.add_argument("--max-utts", type=int, default=0, help="first N utterances of each folder (0: all)")
    wk.add_argument("--json", default=None, help="write the rows (with the DET curve) to this JSON file")
    wk.add_argument("--plot", default=None, help="write the DET curve to this PNG")

    sh = p["sherpa"]
    sh.add_argument("--model-dir", required=True, help="what 'asr export' wrote")
    sh.add_argument("--audio-dir", required=True, help="LibriSpeech-layout folder of flac files and transcripts")
    sh.add_argument("--beam", type=int, default=4)
    sh.add_argument("--threads", type=int, default=1)
    sh.add_argument("--max-utts", type=int, default=0, help="first N utterances (0: all)")
    sh.add_argument("--methods", nargs="+", default=["greedy_search", "modified_beam_search"],
                    choices=["greedy_search", "modified_beam_search"], help="sherpa-onnx's names of the searches")


def _threads(n: int) -> None:
    import torch  # lazy: the verbs that run torch set its threads

    torch.set_num_threads(n)


# Each verb imports its own stack when it runs (see the module docstring): the imports below are the
# "# lazy:" ones that tests/test_architecture.py allows in this module only.


# The verbs that read a checkpoint or a training config, either of which may be a compression run's
# (whose model is built through its method's handler). The others never build a model.
# The range of every numeric option that more than one verb takes, checked for every verb before it runs
# (argparse only checks the type): a beam of 0, a tail padding of 1e9 s or a hotword score of 1e308 would
# otherwise crash or overflow deep inside the search.
OPTION_BOUNDS = {"beam": Range(1, 1000), "threads": Range(1, 1024), "tail_padding": Range(0, 60),
                 "hotwords_score": SCORE_BOUNDS, "chunk_feature_frames": Range(0, 4096), "num_calib": Range(1, 1_000_000),
                 "max_utts": Range(0, 10_000_000), "max_segment_length": Range(0, 86400),
                 "top_k": Range(1, 10_000_000), "sizes": Range(0, 1_000_000), "lm_scale": LM_SCALE_BOUNDS,
                 "order": LM_ORDER_BOUNDS, "commands": Range(0, 100_000_000),
                 "keywords_score": SCORE_BOUNDS, "keywords_threshold": KEYWORD_THRESHOLD_BOUNDS,
                 "max_active_paths": Range(1, 1000), "num_trailing_blanks": Range(0, 1000),
                 "wake_threshold": Range(0, 1), "wake_window": Range(1, 1000), "wake_refractory": Range(0, 100_000),
                 "window": Range(1, 1000), "refractory": Range(0, 100_000), "list_size": Range(1, 1_000_000),
                 "minutes": Range(0.001, 100_000), "max_steps": Range(1, 100_000_000), "hidden_dim": Range(1, 8192),
                 "layers": Range(1, 16)}


def _check_options(args) -> None:
    for name, bounds in OPTION_BOUNDS.items():
        value = getattr(args, name, None)
        for v in value if isinstance(value, list) else [value]:
            if v is not None and v not in bounds:
                raise UserError(f"--{name.replace('_', '-')} {v}: must be {bounds}")


COMPRESSED_MODEL_VERBS = {"train", "compress", "decode", "transcribe", "emulate", "export", "bench"}


def _load_compression_handlers() -> None:
    """Register the handlers defined above ``asr``: AAT's lives in export (it runs the emulator's
    kernels) and registers itself when imported."""
    # lazy: registers the AAT handler
    import export.nna.aat  # noqa: F401


def _cmd_prepare(args) -> None:
    if args.corpus == "synth":
        from asr.data.synth import prepare_synth  # lazy: this verb's stack

        summary = prepare_synth(args.out, size=args.size, seed=args.seed)
    elif args.corpus == "wakeword":
        from asr.data.synth.wakeword import prepare_wakeword  # lazy: this verb's stack

        summary = prepare_wakeword(args.out, args.word, args.size, args.seed)
    elif args.corpus == "lm-text":
        from asr.data.synth import write_lm_text  # lazy: this verb's stack

        summary = write_lm_text(args.out, args.seed, args.commands)
    elif args.corpus == "lm":
        from asr.decoding.ngram_lm import count_text, read_text_lines  # lazy: this verb's stack
        from asr.tokenizer import Tokenizer  # lazy: this verb's stack

        model = count_text(args.text, args.bpe_model, args.order)
        model.save(args.out)
        summary = {"out": args.out, "order": model.order, "vocab_size": model.vocab_size, "ngrams": model.num_ngrams,
                   "bytes": os.path.getsize(args.out)}
        if args.dev_text:
            tokenizer = Tokenizer(args.bpe_model)
            summary["dev_token_perplexity"] = round(
                model.token_perplexity([tokenizer.encode(line) for line in read_text_lines([args.dev_text])]), 3)
    elif args.corpus == "bias-lists":
        from asr.data.bias_lists import prepare_bias_lists  # lazy: this verb's stack

        summary = prepare_bias_lists(args.train, args.parts, args.out, args.top_k, args.sizes, args.seed,
                                     args.hard_distractors)
    else:
        from asr.data.librispeech import prepare_librispeech  # lazy: this verb's stack

        summary = prepare_librispeech(args.root, args.out, args.parts)
    print(json.dumps(summary))


def _cmd_features(args) -> None:
    from asr.data.fbank import compute_fbank  # lazy: this verb's stack

    print(json.dumps(compute_fbank(args.manifests, args.out, args.parts, args.speed_perturb)))


def _cmd_bpe(args) -> None:
    from asr.data.dataset import read_texts  # lazy: this verb's stack
    from asr.tokenizer import Tokenizer, train_bpe  # lazy: this verb's stack

    path = train_bpe(read_texts(args.cuts), args.out, args.vocab_size)
    print(f"wrote {path} ({Tokenizer(path).vocab_size} ids) and {path.parent / 'tokens.txt'}")


def _cmd_train_lm(args) -> None:
    import torch  # lazy: this verb's stack

    from asr.train_lm import train_char_lm  # lazy: this verb's stack

    torch.set_num_threads(args.threads)
    train_char_lm(args.text, args.out, args.minutes, args.max_steps, args.hidden_dim, args.layers, seed=args.seed)


def _cmd_train(args) -> None:
    from asr.config import load_config  # lazy: this verb's stack
    from asr.train import train  # lazy: this verb's stack

    if args.resume and args.force:
        raise UserError("--resume continues the run in train.exp_dir, --force replaces it; pass one of them")
    result = train(load_config(args.config, args.set), resume=args.resume, force=args.force)
    print(f"final checkpoint: {result.final_checkpoint}")


def _cmd_compress(args) -> None:
    from asr.compress import compress  # lazy: this verb's stack

    if args.resume and args.force:
        raise UserError("--resume continues the run in the output folder, --force replaces it; pass one of them")
    result = compress(args.checkpoint, args.method, args.config, args.set, args.exp_dir, resume=args.resume, force=args.force)
    print(f"final checkpoint: {result.final_checkpoint}")


def _cmd_decode(args) -> None:
    from asr.decode import decode, results_values, set_name, table  # lazy: this verb's stack
    from asr.fileio import read_json_object, update_json  # lazy: this verb's stack

    _threads(args.threads)
    if args.results_json:
        read_json_object(args.results_json)  # a bad results file: refused before the decode, not after
    parts = [set_name(cuts) for cuts in args.cuts]
    if len(set(parts)) < len(parts):
        raise UserError(f"--cuts names one set twice ({', '.join(args.cuts)}); each set's results are keyed by its name")
    if args.bias_lists is not None and len(args.bias_lists) != len(args.cuts):
        raise UserError(f"--bias-lists gives {len(args.bias_lists)} file(s) for {len(args.cuts)} --cuts; give one list "
                        "file per cut manifest, in the same order")
    lists = args.bias_lists or [None] * len(args.cuts)
    lm = _lm_fusion(args)
    results = [decode(args.checkpoint, cuts, args.out, args.decoding_method, args.beam, bpe_model=args.bpe_model,
                      delay_reference=args.delay_reference, bias_lists=bias, lm=lm) for cuts, bias in zip(args.cuts, lists)]
    print(table(results, args.checkpoint))
    if args.results_json:
        update_json(args.results_json, results_values(results))
        print(f"updated {args.results_json}")


def _cmd_transcribe(args) -> None:
    import torch  # lazy: this verb's stack

    from asr.audio import audio_blocks, audio_seconds, load_audio  # lazy: this verb's stack
    from asr.checkpoint import checkpoint_tokenizer, load_model  # lazy: this verb's stack
    from asr.chunking import chunking_for  # lazy: this verb's stack
    from asr.data.bias_lists import read_phrases  # lazy: this verb's stack
    from asr.decode import transcribe  # lazy: this verb's stack
    from asr.models.transducer import BiasedModel  # lazy: this verb's stack
    from asr.streaming.recognizer import StreamingRecognizer  # lazy: this verb's stack

    _threads(args.threads)
    lm = _lm_fusion(args)
    model, cfg, ckpt = load_model(args.checkpoint)
    tokenizer = checkpoint_tokenizer(ckpt, cfg, args.checkpoint, args.bpe_model)
    bias = None
    if args.bias_list:
        if model.biasing is None:
            raise UserError(f"--bias-list {args.bias_list}: {args.checkpoint} has no biasing adapter (model.biasing); "
                            "pass a checkpoint of a biasing run, or use hotwords with 'asr stream --hotwords-file'")
        bias = BiasedModel(model, read_phrases(args.bias_list))
    seconds = audio_seconds(args.audio)
    if not args.streaming and seconds <= OFFLINE_MAX_SECONDS:
        print(transcribe(model if bias is None else bias, tokenizer, load_audio(args.audio), args.decoding_method, args.beam,
                         lm))
        return
    if not args.streaming and model.encoder.required_chunk_encoder_frames == 0:
        raise UserError(f"{args.audio}: {seconds:.0f} s long, and {args.checkpoint} is a full-context model, which "
                        "attends over a whole recording at once (memory grows with the square of its length); cut the "
                        f"recording into pieces of at most {OFFLINE_MAX_SECONDS} s, e.g. "
                        f"'sox {args.audio} piece.wav trim 0 {OFFLINE_MAX_SECONDS} : newfile : restart'")
    rec = StreamingRecognizer(model, tokenizer, chunking_for(model.encoder, args.chunk_feature_frames, args.checkpoint),
                              args.decoding_method, args.beam, bias, lm)
    if not args.streaming:  # a long recording: read and encoded block by block, in bounded memory, to the same text
        for block in audio_blocks(args.audio):
            rec.accept_waveform(torch.from_numpy(block))
        rec.input_finished()
        print(rec.text)
        return
    final = rec.transcribe(load_audio(args.audio), on_partial=lambda text: print(f"partial: {text}", flush=True))
    print(f"final: {final}")


def _cmd_average(args) -> None:
    from asr.checkpoint import average_checkpoints, save_checkpoint  # lazy: this verb's stack

    save_checkpoint(average_checkpoints(args.checkpoints), args.out)
    print(f"wrote {args.out} (average of {len(args.checkpoints)})")


def _cmd_emulate(args) -> None:
    from asr.fileio import read_json_object, update_json  # lazy: this verb's stack
    from export.nna.emulate import emulate, results, table  # lazy: this verb's stack

    _threads(args.threads)
    if args.results_json:
        read_json_object(args.results_json)  # a bad results file: refused before the emulation, not after
    out = args.out or str(Path(args.checkpoint).parent / "emulate")
    r = emulate(args.checkpoint, args.cuts, out, args.calib, args.num_calib, args.profile, args.backend,
                args.decoding_method, args.beam, args.chunk_feature_frames, args.logits_bits, args.bpe_model)
    print(table(r, out))
    if args.results_json:
        update_json(args.results_json, results(r))
        print(f"updated {args.results_json}")


def _cmd_export(args) -> None:
    from export.folder import export_onnx, summary  # lazy: this verb's stack

    r = export_onnx(args.checkpoint, args.out, args.chunk_feature_frames, args.bpe_model, tuple(args.int8), args.calib,
                    args.num_calib)
    print(summary(r))


def _cmd_stream(args) -> None:
    from asr.audio import read_audio  # lazy: this verb's stack
    from asr.decoding.wakeword import WakeConfig  # lazy: this verb's stack
    from asr.streaming import jsonl  # lazy: this verb's stack
    from asr.streaming.endpoint import EndpointConfig, EndpointRule  # lazy: this verb's stack

    stdin = args.inputs == ["-"]
    if "-" in args.inputs and not stdin:
        raise UserError("'-' (stdin) must be the only input; decode files and stdin in separate 'asr stream' runs")
    if stdin and sys.stdin is None:  # the shell closed file descriptor 0 ('<&-')
        raise UserError(f"stdin is closed; pipe {RAW_FORMAT} into it, e.g. "
                        "'arecord -q -f S16_LE -r 16000 -c 1 -t raw | asr stream MODEL_DIR -'")
    if stdin and sys.stdin.isatty():
        raise UserError(f"stdin is a terminal; pipe {RAW_FORMAT} into it, e.g. "
                        "'arecord -q -f S16_LE -r 16000 -c 1 -t raw | asr stream MODEL_DIR -'")
    jsonl.check_options(args.decoding_method, args.hotwords_file)
    endpoint = None
    if args.endpoint:
        for option in ("rule1_min_trailing_silence", "rule2_min_trailing_silence", "rule3_min_utterance_length"):
            value = getattr(args, option)
            if not math.isfinite(value) or value <= 0:
                raise UserError(f"--{option.replace('_', '-')} {value}: must be a number of seconds > 0 (0 would end a "
                                "segment at nearly every encoder call; --no-endpoint turns endpointing off)")
        endpoint = EndpointConfig(EndpointRule(False, args.rule1_min_trailing_silence, 0.0),
                                  EndpointRule(True, args.rule2_min_trailing_silence, 0.0),
                                  EndpointRule(False, 0.0, args.rule3_min_utterance_length))
    audio = None if stdin else [read_audio(path) for path in args.inputs]
    lm = _lm_fusion(args)
    wake = WakeConfig(args.wake_threshold, args.wake_window, args.wake_refractory) if args.wake_word else None
    rec = jsonl.build_recognizer(args.model_dir, args.decoding_method, args.beam, args.hotwords_file, args.hotwords_score,
                                 endpoint, args.threads, args.tail_padding, args.max_segment_length or None, lm,
                                 args.bias_list, wake)
    if stdin:
        jsonl.stream_stdin(rec, sys.stdin.buffer.fileno(), jsonl.print_line, args.partials)
    else:
        jsonl.stream_audio(rec, args.inputs, audio, jsonl.print_line, args.partials)


def _cmd_kws(args) -> None:
    from asr.audio import read_audio  # lazy: this verb's stack
    from asr.decoding.keywords import keyword_graph, read_keywords  # lazy: this verb's stack
    from asr.streaming import jsonl  # lazy: this verb's stack
    from asr.streaming.keywords import spot_files, spot_stdin  # lazy: this verb's stack
    from asr.streaming.onnx import OnnxTransducer  # lazy: this verb's stack
    from asr.tokenizer import Tokenizer  # lazy: this verb's stack

    d = Path(args.model_dir)
    if not d.is_dir():
        raise UserError(f"{d}: no such model folder; create it with 'asr export --checkpoint CKPT --out {d}'")
    model = OnnxTransducer(d, num_threads=args.threads)
    if not (d / "bpe.model").is_file():
        raise UserError(f"{d}: no bpe.model, which spells the keywords; re-export the folder with 'asr export'")
    keywords = read_keywords(args.keywords_file, {s: i for i, s in enumerate(model.symbols)},
                             Tokenizer(d / "bpe.model").encode, model.unk_id)
    graph = keyword_graph(keywords, args.keywords_score, args.keywords_threshold)
    if args.inputs == ["-"]:
        if sys.stdin is None or sys.stdin.isatty():
            raise UserError(f"stdin is closed or a terminal; pipe {RAW_FORMAT} into it, e.g. "
                            "'arecord -q -f S16_LE -r 16000 -c 1 -t raw | asr kws MODEL_DIR - --keywords-file F'")
        spot_stdin(model, graph, sys.stdin.buffer.fileno(), jsonl.print_line, args.max_active_paths,
                   args.num_trailing_blanks)
        return
    if "-" in args.inputs:
        raise UserError("'-' (stdin) must be the only input; spot files and stdin in separate 'asr kws' runs")
    audio = [read_audio(path) for path in args.inputs]
    spot_files(model, graph, args.inputs, audio, jsonl.print_line, args.max_active_paths, args.num_trailing_blanks)


def _cmd_bench(args) -> None:
    if args.benchmark == "loss":
        from asr.bench.loss import run  # lazy: this benchmark's stack
    elif args.benchmark == "emulator":
        from asr.bench.emulator import run  # lazy: this benchmark's stack
    elif args.benchmark == "latency":
        from asr.bench.latency import run  # lazy: this benchmark's stack
    elif args.benchmark == "compression":
        from asr.bench.compression import run  # lazy: this benchmark's stack
    elif args.benchmark == "hotwords":
        from asr.bench.hotwords import run  # lazy: this benchmark's stack
    elif args.benchmark == "biasing":
        from asr.bench.biasing import run  # lazy: this benchmark's stack
    elif args.benchmark == "wakeword":
        from asr.bench.wakeword import run  # lazy: this benchmark's stack
    elif args.benchmark == "long-stream":
        from asr.bench.long_stream import run  # lazy: this benchmark's stack
    elif args.benchmark == "ancat":
        from asr.bench.ancat import run  # lazy: this benchmark's stack
    else:
        from asr.bench.sherpa import run  # lazy: this benchmark's stack
    run(args)


def _cmd_models(args) -> None:
    from asr.models.registry import presets_table  # lazy: this verb's stack

    print(presets_table())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    warnings.filterwarnings("ignore", message=".*LSTM with projections is not supported with oneDNN.*")
    try:
        _check_options(args)
        if args.verb == "bench":  # before torch or BLAS loads
            reexec_with_env(process_env(args), argv)
        if args.verb in COMPRESSED_MODEL_VERBS:
            _load_compression_handlers()
        globals()[f"_cmd_{args.verb.replace('-', '_')}"](args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader left ('asr stream ... | head -n 1'): end quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # else the flush at exit fails again
        return 141  # 128 + SIGPIPE: what a shell reports for a tool that SIGPIPE ended
    except OSError as e:  # a full disk, an output path that cannot be written
        print(f"error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
