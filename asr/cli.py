"""``asr <verb>``: one CLI, each verb a thin wrapper over a library function.

Bad input raises :class:`asr.errors.UserError`; :func:`main` prints it as one ``error:`` line and
exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from asr.errors import UserError

EXAMPLES = {
    "prepare": "examples:\n  asr prepare synth --size mini --out data/synth-mini\n"
               "  asr prepare librispeech --root download/LibriSpeech --parts train-clean-100 dev-clean test-clean",
    "features": "example:\n  asr features --manifests data/manifests --out data/fbank --parts train dev test --speed-perturb train",
    "bpe": "example:\n  asr bpe --cuts data/manifests/cuts_train.jsonl.gz --out data/lang_bpe --vocab-size 256",
    "train": "examples:\n  asr train --config recipes/synth/lstm.yaml\n"
             "  asr train --config recipes/synth/lstm.yaml --set train.max_steps=500 --set optim.lr=1e-3 --resume",
    "decode": "example:\n  asr decode --checkpoint exp/demo/final.pt --cuts data/fbank/cuts_test.jsonl.gz "
              "--out exp/demo/decode --method modified_beam_search --beam 4",
    "transcribe": "examples:\n  asr transcribe recording.wav --checkpoint exp/demo/final.pt\n"
                  "  asr transcribe recording.wav --checkpoint exp/demo/final.pt --streaming --chunk-frames 32",
    "average": "example:\n  asr average --checkpoints exp/run/step-1500.pt exp/run/step-2000.pt --out exp/run/avg.pt",
    "models": "example:\n  asr models",
    "export": "example:\n  asr export --checkpoint exp/demo/final.pt --out exp/demo/onnx\n"
              "  asr export --checkpoint exp/demo/final.pt --out exp/demo/onnx-c16 --chunk-frames 16\n"
              "  asr export --checkpoint exp/demo/final.pt --out exp/demo/onnx --int8 dynamic static accelerator",
    "bench": "example:\n  asr bench latency --model-dir exp/demo/onnx --data data/synth-small/test --checkpoint exp/demo/final.pt",
    "compress": "examples:\n  asr compress --method s8bqat --from exp/demo/final.pt --config recipes/synth/compress-s8bqat.yaml\n"
                "  asr compress --method csp --from exp/demo/final.pt --set compression.sparsity=0.5 --exp-dir exp/csp50",
    "emulate": "example:\n  asr emulate --checkpoint exp/demo/final.pt --data data/fbank/synth-small/cuts_test.jsonl.gz\n"
               "  asr emulate --checkpoint exp/demo/final.pt --data data/fbank/synth-small/cuts_test.jsonl.gz "
               "--profile onnxruntime --method modified_beam_search",
}


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="asr", formatter_class=fmt,
        description="ondevice-asr: train, decode and ship streaming transducers.",
        epilog="example (the whole demo: data, features, BPE, training, decoding):\n  make demo\n"
               "run 'asr <verb> --help' for each verb's options and examples",
    )
    verbs = p.add_subparsers(dest="verb", metavar="<verb>", required=True)

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        return verbs.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES[name], formatter_class=fmt)

    prep = verb("prepare", "make a corpus and/or its lhotse manifests")
    corpora = prep.add_subparsers(dest="corpus", metavar="<corpus>", required=True)
    synth = corpora.add_parser("synth", help="synthesize the embedded voice-assistant corpus (espeak-ng)",
                               epilog="example:\n  asr prepare synth --size mini --out data/synth-mini", formatter_class=fmt)
    synth.add_argument("--size", default="mini", choices=["mini", "small", "medium"])
    synth.add_argument("--out", required=True, help="output folder (LibriSpeech layout)")
    synth.add_argument("--seed", type=int, default=0)
    libri = corpora.add_parser("librispeech", help="lhotse manifests from a local LibriSpeech-layout tree",
                               epilog="example:\n  asr prepare librispeech --root download/LibriSpeech --out data/manifests",
                               formatter_class=fmt)
    libri.add_argument("--root", required=True, help="folder holding the parts (train-clean-100/, dev-clean/, ...)")
    libri.add_argument("--parts", nargs="*", default=None, help="parts to prepare (default: all found)")
    libri.add_argument("--out", default="data/manifests", help="manifest folder (default: %(default)s)")

    feats = verb("features", "compute and cache 80-dim kaldi fbank features (the sherpa-onnx front end)")
    feats.add_argument("--manifests", default="data/manifests")
    feats.add_argument("--out", default="data/fbank")
    feats.add_argument("--parts", nargs="+", required=True)
    feats.add_argument("--speed-perturb", nargs="*", default=[], help="parts that get 0.9x/1.1x speed copies")

    bpe = verb("bpe", "train the sentencepiece BPE tokenizer on training transcripts; writes bpe.model and tokens.txt")
    bpe.add_argument("--cuts", required=True, help="training cut manifest (its supervision texts are used)")
    bpe.add_argument("--out", default="data/lang_bpe")
    bpe.add_argument("--vocab-size", type=int, default=256)

    train = verb("train", "train a transducer from a YAML config")
    train.add_argument("--config", required=True)
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in train.exp_dir")

    dec = verb("decode", "decode a cut manifest and write recogs/errs/wer files")
    dec.add_argument("--checkpoint", required=True)
    dec.add_argument("--cuts", required=True)
    dec.add_argument("--out", required=True)
    dec.add_argument("--method", default="greedy", choices=["greedy", "modified_beam_search"])
    dec.add_argument("--beam", type=int, default=4)
    dec.add_argument("--bpe-model", default=None, help="default: the one named in the checkpoint's config")
    dec.add_argument("--results-json", default=None, help="merge test_wer, params, train_minutes, decode_rtf into this JSON")
    dec.add_argument("--delay-reference", default=None, metavar="CKPT",
                     help="also report the symbol delay against this full-context model's forced alignment "
                          "(a Conformer checkpoint is run with full context)")

    tr = verb("transcribe", "decode one audio file (prints partial results with --streaming)")
    tr.add_argument("audio")
    tr.add_argument("--checkpoint", required=True)
    tr.add_argument("--streaming", action="store_true", help="stateful chunk-by-chunk decoding with partial results")
    tr.add_argument("--chunk-frames", type=int, default=None,
                    help="feature frames per chunk (sherpa-onnx decode_chunk_len; default: a Conformer's own "
                         "chunk_size x 4, else 32)")
    tr.add_argument("--method", default="greedy", choices=["greedy", "modified_beam_search"])
    tr.add_argument("--beam", type=int, default=4)
    tr.add_argument("--bpe-model", default=None)

    avg = verb("average", "average the weights of several checkpoints")
    avg.add_argument("--checkpoints", nargs="+", required=True)
    avg.add_argument("--out", required=True)

    comp = verb("compress", "fine-tune a float checkpoint into a compressed one (sub-8-bit, int8 QAT, pruning) "
                            "through the training loop; writes final.pt with the converted model")
    comp.add_argument("--method", required=True, help="s8bqat | gq | qat | aat | csp | magnitude (asr.compression.METHODS)")
    comp.add_argument("--from", dest="init_from", required=True, metavar="CKPT", help="the float checkpoint (e.g. exp/demo/final.pt)")
    comp.add_argument("--config", default=None, help="YAML with a compression: section and train/optim overrides; "
                      "without it: 15 %% of the float run's steps at 0.1x its learning rate")
    comp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a value, e.g. compression.bits=3")
    comp.add_argument("--exp-dir", default=None, help="output folder (default: train.exp_dir, else <CKPT dir>/compress-<method>)")
    comp.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the output folder")

    emu = verb("emulate", "lower an LSTM transducer to the int8 NNA emulator and compare its WER with float")
    emu.add_argument("--checkpoint", required=True)
    emu.add_argument("--data", required=True, help="cut manifest to decode (e.g. the test split)")
    emu.add_argument("--calib", default=None, help="cut manifest for activation ranges (default: the config's dev cuts)")
    emu.add_argument("--num-calib", type=int, default=100, help="calibration utterances (default: %(default)s)")
    emu.add_argument("--profile", default="fixed_point", choices=["fixed_point", "onnxruntime"],
                     help="requantization rule of the target NNA (default: %(default)s)")
    emu.add_argument("--backend", default="numba", choices=["numba", "reference"])
    emu.add_argument("--method", default="greedy", choices=["greedy", "modified_beam_search"])
    emu.add_argument("--beam", type=int, default=4)
    emu.add_argument("--chunk-frames", type=int, default=32, help="feature frames per streaming chunk (0 = whole utterance)")
    emu.add_argument("--logits-bits", type=int, default=8, choices=[8, 16], help="joiner output format")
    emu.add_argument("--out", default=None, help="folder for recogs/errs files (default: <checkpoint dir>/emulate)")
    emu.add_argument("--bpe-model", default=None)
    emu.add_argument("--results-json", default=None, help="merge nna_wer and float_wer into this JSON")

    exp = verb("export", "export a transducer to ONNX for sherpa-onnx and onnxruntime (checked against PyTorch)")
    exp.add_argument("--checkpoint", required=True)
    exp.add_argument("--out", required=True, help="folder for encoder/decoder/joiner.onnx, tokens.txt, bpe.model")
    exp.add_argument("--chunk-frames", type=int, default=None,
                     help="feature frames the stream advances per encoder call (decode_chunk_len; default: 32, "
                          "a Conformer's own chunk_size x 4)")
    exp.add_argument("--bpe-model", default=None, help="default: the one named in the checkpoint's config")
    exp.add_argument("--int8", nargs="+", default=[], choices=["dynamic", "static", "accelerator"],
                     help="also write these int8 flavours, each a complete model folder OUT/int8-<flavour> "
                          "(see export/int8.py)")
    exp.add_argument("--calib", default=None,
                     help="cut manifest the static flavours calibrate on and every flavour's SNR is measured on "
                          "(default: the checkpoint's dev cuts)")
    exp.add_argument("--num-calib", type=int, default=50,
                     help="calibration utterances; the last 20%% only measure the encoder SNR (default %(default)s)")

    bench = verb("bench", "benchmarks that run several engines side by side and print one table")
    kinds = bench.add_subparsers(dest="benchmark", metavar="<benchmark>", required=True)
    lat = kinds.add_parser(
        "latency", formatter_class=fmt,
        help="real-time factor, per-chunk, first-token and user-perceived latency: PyTorch, ONNX fp32, int8, sherpa-onnx",
        description="Replays each test utterance as a live microphone session (100 ms pieces, then silence until "
                    "an endpoint) on every engine; see asr/streaming/latency.py for the definitions.",
        epilog="example:\n  asr bench latency --model-dir exp/demo/onnx --data data/synth-small/test "
               "--checkpoint exp/demo/final.pt --json exp/demo/latency.json --plot exp/demo/latency.png")
    lat.add_argument("--model-dir", required=True, help="what 'asr export' wrote (int8-* subfolders are benchmarked too)")
    lat.add_argument("--data", required=True, help="LibriSpeech-layout folder of flac files and transcripts")
    lat.add_argument("--checkpoint", default=None, help="also run this checkpoint in PyTorch (pytorch-fp32)")
    lat.add_argument("--max-utts", type=int, default=100, help="first N utterances (default %(default)s)")
    lat.add_argument("--method", default="greedy", choices=["greedy", "modified_beam_search"])
    lat.add_argument("--beam", type=int, default=4)
    lat.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                     help="thread counts for the RTF columns; latency percentiles use the first (default 1 2)")
    lat.add_argument("--max-silence", type=float, default=3.0, help="seconds of silence fed after each utterance")
    lat.add_argument("--engines", nargs="+", default=None, help="a subset, e.g. onnx-fp32 sherpa-onnx-fp32")
    lat.add_argument("--json", default=None, help="write one object per engine to this JSON file")
    lat.add_argument("--plot", default=None, help="write box plots of the latency distributions to this PNG")
    lat.add_argument("--results-json", default=None,
                     help="merge onnx_fp32_wer, onnx_int8_wer, int8/fp32_encoder_bytes, stream_rtf, sherpa_rtf, "
                          "sherpa_tokens_match into this JSON")

    from asr.streaming import stream_cli

    EXAMPLES.setdefault("stream", stream_cli.EXAMPLES)
    stream_cli.add_arguments(verb("stream", stream_cli.HELP))

    verb("models", "list the named model presets")
    return p


def _cmd_prepare(args) -> None:
    if args.corpus == "synth":
        from asr.data.synth import prepare_synth

        summary = prepare_synth(args.out, size=args.size, seed=args.seed)
    else:
        from asr.data.librispeech import prepare_librispeech

        summary = prepare_librispeech(args.root, args.out, args.parts)
    print(json.dumps(summary))


def _cmd_features(args) -> None:
    from asr.data.fbank import compute_fbank

    print(json.dumps(compute_fbank(args.manifests, args.out, args.parts, args.speed_perturb)))


def _cmd_bpe(args) -> None:
    from asr.data.dataset import read_texts
    from asr.tokenizer import Tokenizer, train_bpe

    path = train_bpe(read_texts(args.cuts), args.out, args.vocab_size)
    print(f"wrote {path} ({Tokenizer(path).vocab_size} ids) and {path.parent / 'tokens.txt'}")


def _cmd_train(args) -> None:
    from asr.config import load_config
    from asr.train import train

    result = train(load_config(args.config, args.set), resume=args.resume)
    print(f"final checkpoint: {result.final_checkpoint}")


def _cmd_compress(args) -> None:
    from asr.config import compress_config
    from asr.train import train

    result = train(compress_config(args.init_from, args.method, args.config, args.set, args.exp_dir), resume=args.resume)
    print(f"final checkpoint: {result.final_checkpoint}")


def _cmd_decode(args) -> None:
    from asr.decode import decode, update_results

    r = decode(args.checkpoint, args.cuts, args.out, args.method, args.beam, bpe_model=args.bpe_model,
               delay_reference=args.delay_reference)
    delay_head, delay_cell = ("", "") if r.symbol_delay_ms is None else (" symbol delay ms |", f" {r.symbol_delay_ms:.1f} |")
    print("| checkpoint | method | utts | WER % | params | train min | decode RTF |" + delay_head)
    print("|---|---|---|---|---|---|---|" + ("---|" if delay_head else ""))
    label = args.method if args.method == "greedy" else f"{args.method}, beam {args.beam}"
    print(f"| {args.checkpoint} | {label} | {r.num_utts} | {r.wer:.2f} | {r.params / 1e6:.2f} M | {r.train_minutes:.1f} | {r.rtf:.4f} |" + delay_cell)
    if args.results_json:
        values = {"test_wer": round(r.wer, 3), "params": r.params, "train_minutes": round(r.train_minutes, 2),
                  "decode_rtf": round(r.rtf, 5), "decode_method": args.method}
        if args.method != "greedy":
            values["decode_beam"] = args.beam
        if r.symbol_delay_ms is not None:
            values["symbol_delay_ms"] = round(r.symbol_delay_ms, 1)
        update_results(args.results_json, values)
        print(f"updated {args.results_json}")


def _cmd_transcribe(args) -> None:
    import torch

    from asr.checkpoint import load_model
    from asr.decoding.search import search
    from asr.features import fbank, load_audio
    from asr.streaming.recognizer import StreamingRecognizer
    from asr.tokenizer import Tokenizer

    model, cfg, _ = load_model(args.checkpoint)
    tokenizer = Tokenizer(args.bpe_model or cfg.data.bpe_model)
    samples = load_audio(args.audio)
    if not args.streaming:
        x = fbank(samples).unsqueeze(0)
        with torch.no_grad():
            enc, enc_lens = model.encode(x, torch.tensor([x.size(1)]))
        print(tokenizer.decode(search(model, enc, enc_lens, args.method, args.beam).hyps[0]))
        return
    # a Conformer streams as its chunk-masked forward only at the chunk it attends in
    chunk = args.chunk_frames or (getattr(model.encoder.cfg, "chunk_size", 0) * model.encoder.subsampling_factor or 32)
    try:
        rec = StreamingRecognizer(model, tokenizer, chunk, args.method, args.beam)
    except ValueError as e:
        raise UserError(f"--chunk-frames {chunk}: {e}") from None
    step = 1600  # feed 100 ms at a time, as a microphone would
    last = ""
    for start in range(0, samples.numel(), step):
        rec.accept_waveform(samples[start : start + step])
        if rec.text != last:
            last = rec.text
            print(f"partial: {last}", flush=True)
    rec.input_finished()
    print(f"final: {rec.text}")


def _cmd_average(args) -> None:
    from asr.checkpoint import average_checkpoints, save_checkpoint

    save_checkpoint(average_checkpoints(args.checkpoints), args.out)
    print(f"wrote {args.out} (average of {len(args.checkpoints)})")


def _cmd_emulate(args) -> None:
    from pathlib import Path

    from asr.decode import update_results
    from export.nna import emulate

    out = args.out or str(Path(args.checkpoint).parent / "emulate")
    r = emulate(args.checkpoint, args.data, out, args.calib, args.num_calib, args.profile, args.backend, args.method,
                args.beam, args.chunk_frames, args.logits_bits, args.bpe_model)
    print("| model | method | utts | WER % | weight bytes | decode RTF |")
    print("|---|---|---|---|---|---|")
    print(f"| float32 | {args.method} | {r['num_utts']} | {r['float_wer']:.2f} | {r['fp32_bytes']} | {r['float_rtf']:.4f} |")
    print(f"| NNA int8 ({args.profile}, emulated) | {args.method} | {r['num_utts']} | {r['nna_wer']:.2f} | "
          f"{r['nna_bytes']} | {r['nna_rtf']:.4f} |")
    print(f"calibrated on {r['calib_utts']} utterances; NNA weights + biases {r['nna_bytes']} bytes, activation tables "
          f"{r['nna_table_bytes']} bytes (float32: encoder, predictor, joiner only); per-utterance errors in {out}")
    if args.results_json:
        update_results(args.results_json, {"nna_wer": round(r["nna_wer"], 3), "nna_float_wer": round(r["float_wer"], 3),
                                           "nna_bytes": r["nna_bytes"], "nna_profile": args.profile})
        print(f"updated {args.results_json}")


def _cmd_export(args) -> None:
    from export.onnx import export_onnx

    r = export_onnx(args.checkpoint, args.out, args.chunk_frames, args.bpe_model, tuple(args.int8), args.calib,
                    args.num_calib)
    print("| file | bytes |\n|---|---|")
    for name, size in r["files"].items():
        print(f"| {name} | {size} |")
    for flavour, info in r["int8"].items():
        ratio = r["files"]["encoder.onnx"] / info["bytes"]["encoder.onnx"]
        calibrated = "no calibration" if flavour == "dynamic" else f"calibrated on {info['calib_utts']}"
        snr = ("SNR not measured (no calibration manifest)" if info["encoder_snr_db"] is None else
               f"encoder_out SNR {info['encoder_snr_db']:.1f} dB per chunk (float32 states) on {info['snr_utts']} "
               "held-out utterances")
        print(f"int8-{flavour}: encoder {ratio:.2f}x smaller than float32, {snr} ({calibrated})")
    errs = ", ".join(f"{k} {v:.2g}" for k, v in r["max_abs_diff"].items())
    print(f"T={r['T']} decode_chunk_len={r['decode_chunk_len']}; onnxruntime vs PyTorch max |diff|: {errs}; "
          f"wrote {r['out']}")


def _cmd_bench(args) -> None:
    from pathlib import Path

    from asr.decode import update_results
    from asr.streaming.latency import bench_latency, table

    chosen = set(args.engines or [])
    if args.results_json and args.engines and not ({"onnx-fp32", "sherpa-onnx-fp32"} <= chosen
                                                   and any(e.startswith("onnx-int8-") for e in chosen)):
        raise UserError("--results-json needs the engines onnx-fp32, sherpa-onnx-fp32 and an onnx-int8-* one in the run")
    rows, summary = bench_latency(args.model_dir, args.data, args.checkpoint, args.max_utts, args.method, args.beam,
                                  tuple(args.threads), args.max_silence, args.engines, args.json, args.plot)
    label = args.method if args.method == "greedy" else f"{args.method}, beam {args.beam}"
    print(f"{rows[0]['utts']} utterances, {label}; latency columns at {args.threads[0]} thread(s)")
    print(table(rows))
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
    if args.results_json and "onnx_int8_wer" in summary and "sherpa_rtf" in summary:
        best = Path(args.model_dir) / summary["best_int8"].replace("onnx-", "")
        update_results(args.results_json, {
            "onnx_fp32_wer": round(summary["onnx_fp32_wer"], 3), "onnx_int8_wer": round(summary["onnx_int8_wer"], 3),
            "onnx_int8_flavour": summary["best_int8"], "int8_encoder_bytes": (best / "encoder.onnx").stat().st_size,
            "fp32_encoder_bytes": (Path(args.model_dir) / "encoder.onnx").stat().st_size,
            "stream_rtf": round(summary["stream_rtf"], 5), "sherpa_rtf": round(summary["sherpa_rtf"], 5),
            "sherpa_tokens_match": summary["sherpa_tokens_match"], "latency_utts": summary["utts"],
            "latency_method": args.method if args.method == "greedy" else f"{args.method}, beam {args.beam}"})
        print(f"updated {args.results_json}")
    elif args.results_json:
        raise UserError("--results-json needs the onnx-fp32, sherpa-onnx-fp32 and at least one int8 engine in the run")


def _cmd_stream(args) -> None:
    from asr.streaming import stream_cli

    stream_cli.run(args)


def _cmd_models(args) -> None:
    from asr.models.registry import ENCODERS, list_models

    print("presets: " + ", ".join(list_models()))
    print("encoder types: " + ", ".join(sorted(ENCODERS)))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    warnings.filterwarnings("ignore", message=".*LSTM with projections is not supported with oneDNN.*")
    try:
        globals()[f"_cmd_{args.verb}"](args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
