"""``asr emulate``: the float model and its lowering on the emulated NNA, decoded side by side.

Calibrate on real utterances (:mod:`export.nna.calibrate`), lower (:mod:`export.nna.lower`), decode a
test manifest with the float model and with :class:`export.nna.transducer.NNATransducer`, and score
both (``recogs-``/``errs-``/``wer-`` files, as ``asr decode`` writes them).
"""

from __future__ import annotations

import time

from asr.checkpoint import checkpoint_tokenizer, load_model
from asr.chunking import DEFAULT_CHUNK_FEATURE_FRAMES
from asr.compression.common import deployable_parameters
from asr.decode import decode_model
from asr.errors import UserError
from export.nna.calibrate import calibrate, one_utterance_batches
from export.nna.lower import check_lowerable
from export.nna.transducer import NNATransducer
from nna_emulator import spec


def emulate(checkpoint: str, cuts: str, out_dir: str, calib: str | None = None, num_calib: int = 100,
            profile: str = "fixed_point", backend: str = "numba", method: str = "greedy", beam: int = 4,
            chunk_feature_frames: int = DEFAULT_CHUNK_FEATURE_FRAMES, logits_bits: int = 8,
            bpe_model: str | None = None) -> dict:
    """``asr emulate``: calibrate on ``calib`` (default: the checkpoint's dev cuts), lower, decode the
    manifest ``cuts`` with the float model and with the emulated NNA; returns the numbers of both."""
    if profile not in spec.PROFILES:
        raise UserError(f"--profile {profile}: use one of {', '.join(spec.PROFILES)}")
    if num_calib < 1:
        raise UserError(f"--num-calib {num_calib}: must be at least 1")
    model, cfg, ckpt = load_model(checkpoint)
    check_lowerable(model)
    tokenizer = checkpoint_tokenizer(ckpt, cfg, checkpoint, bpe_model)
    calib = calib or cfg.data.dev_cuts
    t0 = time.perf_counter()
    batches = one_utterance_batches(calib, tokenizer, num_calib)
    ranges = calibrate(model, batches)
    nna = NNATransducer.from_model(model, ranges, backend, profile, chunk_feature_frames, logits_bits)
    lower_s = time.perf_counter() - t0
    tag = f"{method}"
    float_r = decode_model(model, tokenizer, cuts, out_dir, method, beam, tag=f"float-{tag}")
    nna_r = decode_model(nna, tokenizer, cuts, out_dir, method, beam, tag=f"nna-{profile}-{tag}")
    fp32_bytes = sum(p.numel() * 4 for _, p in deployable_parameters(model))
    return {"float_wer": float_r.wer, "nna_wer": nna_r.wer, "float_rtf": float_r.rtf, "nna_rtf": nna_r.rtf,
            "nna_bytes": nna.weight_bytes(), "nna_table_bytes": nna.table_bytes(), "fp32_bytes": fp32_bytes, "num_utts": nna_r.num_utts,
            "calib_utts": len(batches), "calib_lower_seconds": lower_s, "profile": profile, "method": method,
            "backend": backend}


def table(r: dict, out_dir: str) -> str:
    """What ``asr emulate`` prints: float and emulated WER side by side, bytes, speed."""
    method = r["method"]
    return "\n".join([
        "| model | method | utts | WER % | weight bytes | decode RTF |", "|---|---|---|---|---|---|",
        f"| float32 | {method} | {r['num_utts']} | {r['float_wer']:.2f} | {r['fp32_bytes']} | {r['float_rtf']:.4f} |",
        f"| NNA int8 ({r['profile']}, emulated) | {method} | {r['num_utts']} | {r['nna_wer']:.2f} | {r['nna_bytes']} | "
        f"{r['nna_rtf']:.4f} |",
        f"calibrated on {r['calib_utts']} utterances; NNA weights + biases {r['nna_bytes']} bytes, activation tables "
        f"{r['nna_table_bytes']} bytes (float32: encoder, predictor, joiner only); per-utterance errors in {out_dir}"])


def results(r: dict) -> dict:
    """The keys ``asr emulate --results-json`` merges into a results file."""
    return {"nna_wer": round(r["nna_wer"], 3), "nna_float_wer": round(r["float_wer"], 3), "nna_bytes": r["nna_bytes"],
            "nna_profile": r["profile"]}
