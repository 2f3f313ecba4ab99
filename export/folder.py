"""``asr export``: a sherpa-onnx model folder from a checkpoint, written only once every check passed.

The folder: ``encoder.onnx``, ``decoder.onnx``, ``joiner.onnx`` (fp32, ``export.onnx``, checked
against PyTorch), ``tokens.txt`` (``<blk> 0`` ...), ``bpe.model`` (the tokenizer the checkpoint
carries) and ``bpe.vocab`` (what sherpa-onnx's ``bpe_vocab=`` reads to spell hotwords); and one
complete folder ``int8-<flavour>`` per int8 flavour asked for (``export.int8``). Files are built in a
temporary folder and moved in one by one, so a failed export leaves nothing half-written.

A checkpoint with a biasing adapter (``model.biasing``) also gets ``bias_encoder.onnx`` (its phrase
encoder, one phrase a call), and its encoder (and decoder, with a predictor adapter) graphs take the
list's keys and values as two more inputs, ``bias_keys`` and ``bias_values`` (P, A): ``asr stream
--bias-list`` runs them; sherpa-onnx cannot (it feeds the three inputs it knows). A checkpoint without
one exports exactly as before. A wake-word model (``model.wakeword``) routes its frames inside
``encoder.onnx`` (``asr.models.wakeword.DualAttention.route``: gather, each branch on its rows, scatter)
and outputs the detector's probabilities as a fourth output, ``wake_prob``.

Refused with a one-line error: the accelerator int8 flavour of a biasing model, the LSTM predictor
(sherpa-onnx's icefall path needs a stateless decoder), a chunk the encoder does not stream at
(``asr.chunking``; a Conformer exports at its own chunk) and the static int8 flavours of the
ConvRNN-T (its LSTM op would stay float).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from asr.checkpoint import checkpoint_tokenizer, load_model
from asr.chunking import chunking_for
from asr.errors import UserError
from asr.fileio import remove_stale_temps
from asr.models.convrnnt import ConvRNNTEncoder
from asr.models.predictor import StatelessPredictor
from asr.streaming.pytorch import is_lstm
from asr.tokenizer import write_bpe_vocab, write_tokens
from export import int8 as q
from export.onnx import BIAS_GRAPH, GRAPHS, SIDE_FILES, write_graphs


def check_exportable(model, int8: tuple[str, ...] = ()) -> None:
    if getattr(model, "biasing", None) is not None and "accelerator" in int8:
        raise UserError("asr export --int8 accelerator: a biasing model's graphs take a list of any length, which "
                        "an accelerator's fixed shapes cannot; use --int8 dynamic or static")
    if not isinstance(model.predictor, StatelessPredictor):
        raise UserError("asr export: sherpa-onnx needs a stateless predictor (model.predictor.type: stateless); "
                        "this checkpoint has an LSTM predictor")
    static = [f for f in int8 if f in ("static", "accelerator")]
    if static and isinstance(model.encoder, ConvRNNTEncoder):
        raise UserError(f"asr export --int8 {' '.join(static)}: the ConvRNN-T's LSTM layers would stay float "
                        "(QDQ does not quantize the LSTM op, and only the LSTM encoder is unrolled); use --int8 dynamic")


def export_onnx(checkpoint: str, out_dir: str, chunk_feature_frames: int | None = None, bpe_model: str | None = None,
                int8: tuple[str, ...] = (), calib: str | None = None, num_calib: int = 50) -> dict:
    """Write the model folder ``out_dir`` (see the module docstring); ``calib``: the cut manifest the
    static flavours calibrate on and every flavour's SNR is measured on (default the checkpoint's dev cuts)."""
    int8 = tuple(dict.fromkeys(int8))  # each flavour once
    unknown = [f for f in int8 if f not in q.FLAVOURS]
    if unknown:
        raise UserError(f"--int8 {' '.join(unknown)}: unknown flavour; use {', '.join(q.FLAVOURS)}")
    model, cfg, ckpt = load_model(checkpoint)
    check_exportable(model, int8)
    chunking = chunking_for(model.encoder, chunk_feature_frames, checkpoint)
    tokenizer = checkpoint_tokenizer(ckpt, cfg, checkpoint, bpe_model)
    # static flavours calibrate on these; every flavour's SNR is measured on the held-out part (a
    # dynamic-only export without a manifest here skips the SNR rather than fail)
    calib_path = calib or cfg.data.dev_cuts
    need = bool(set(int8) & set(q.STATIC)) or (int8 and (calib is not None or Path(calib_path).is_file()))
    calib_x = q.calibration_features(calib_path, num_calib) if need else []
    model = model.float().eval()

    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out, ".export.tmp-")  # of an export that was killed
    tmp = out / f".export.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        # the ONNX LSTM op has no projection: LSTMP layers are written out cell by cell
        errs = write_graphs(model, tmp, chunking, unrolled=is_lstm(model) and bool(model.encoder.cfg.proj_dim))
        tokenizer.save(tmp / "bpe.model")
        write_tokens(tmp / "bpe.model", tmp / "tokens.txt")
        write_bpe_vocab(tmp / "bpe.model", tmp / "bpe.vocab")  # sherpa-onnx's bpe_vocab= (hotwords)
        files = [*GRAPHS, *SIDE_FILES] + ([BIAS_GRAPH] if model.biasing is not None else [])
        int8_info = {}
        for flavour in int8:
            int8_info[flavour] = q.make_flavour(model, tmp, tmp / f"int8-{flavour}", flavour, chunking, calib_x)
            files += [f"int8-{flavour}/{f}" for f in (*GRAPHS, *SIDE_FILES)] + (
                [f"int8-{flavour}/{BIAS_GRAPH}"] if model.biasing is not None else [])
        for name in files:
            (out / name).parent.mkdir(exist_ok=True)
            os.replace(tmp / name, out / name)
        for flavour in set(q.FLAVOURS) - set(int8):  # an earlier export's flavours would now be stale
            shutil.rmtree(out / f"int8-{flavour}", ignore_errors=True)
        if model.biasing is None:  # so would an earlier biasing export's phrase encoder
            (out / BIAS_GRAPH).unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and not any(out.iterdir()):  # failed or interrupted: no empty folder left behind
            out.rmdir()
    return {"out": str(out), "files": {f: (out / f).stat().st_size for f in files}, "max_abs_diff": errs,
            "decode_chunk_len": chunking.chunk_feature_frames, "T": chunking.window_feature_frames, "int8": int8_info}


def summary(result: dict) -> str:
    """What ``asr export`` prints: bytes per file, each int8 flavour's size ratio and encoder SNR, the parity."""
    lines = ["| file | bytes |", "|---|---|"] + [f"| {name} | {size} |" for name, size in result["files"].items()]
    for flavour, info in result["int8"].items():
        ratio = result["files"]["encoder.onnx"] / info["bytes"]["encoder.onnx"]
        calibrated = "no calibration" if flavour == "dynamic" else f"calibrated on {info['calib_utts']}"
        snr = ("SNR not measured (no calibration manifest)" if info["encoder_snr_db"] is None else
               f"encoder_out SNR {info['encoder_snr_db']:.1f} dB per chunk (float32 states) on {info['snr_utts']} "
               "held-out utterances")
        lines.append(f"int8-{flavour}: encoder {ratio:.2f}x smaller than float32, {snr} ({calibrated})")
    errs = ", ".join(f"{k} {v:.2g}" for k, v in result["max_abs_diff"].items())
    lines.append(f"T={result['T']} decode_chunk_len={result['decode_chunk_len']}; onnxruntime vs PyTorch max |diff|: "
                 f"{errs}; wrote {result['out']}")
    return "\n".join(lines)
