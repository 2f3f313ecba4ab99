"""``asr bench compression``: compression results side by side, all from one float checkpoint: for each method (a recipe
config), fine-tune with ``asr compress`` (or reuse a finished run), then decode the test set with the
float model and on the emulated int8 NNA (``asr emulate``'s calibration, lowering and search), and
count the bytes on the device. Rows for the float model and for int8 post-training quantization
(the float model lowered as it is) come first. With ``--audio-dir`` (the same test set as a
LibriSpeech-layout folder) every model is also exported with ``asr export --int8 dynamic`` (or
``--ort-int8`` another flavour) and streamed through onnxruntime by ``asr bench latency``'s loop:
``wer_onnx_int8`` and ``onnx_int8_bytes`` (the three int8 graphs; ONNX stores every weight in 8
bits, so sub-8-bit models are no smaller there).

    asr bench compression --checkpoint exp/demo/final.pt --cuts data/fbank/synth-small/cuts_test.jsonl.gz \
        --audio-dir data/synth-small/test
    asr bench compression ... --runs s8bqat-4bit csp-50 magnitude-50 --max-utts 300

Writes ``<out>/results.json`` (default ``exp/compression``): a list of rows with ``method``,
``bits`` (average over the compressed weights) or ``sparsity``, ``bytes``, ``wer_float``, ``wer_nna``,
``fp32_bytes``, ``fp32_wer``, plus ``run``, ``fine_tune_minutes``, ``config``, ``wer_onnx_int8``,
``onnx_int8_bytes`` and ``float_minus_fp32`` / ``nna_minus_ptq``: [difference, low, high] in WER
points, a paired-bootstrap 95 % interval over the test utterances (the demo's test set has about
6 000 words, so differences under about 1 point are mostly within it). Rows of runs not in this
invocation are kept. Each run's checkpoint is ``<out>/<run>/final.pt``; a finished run is
reused unless ``--retrain``. int8 QAT and AAT models count as the lowered NNA program's bytes, the
others as :func:`asr.compression.model_bytes` (b-bit indices + codebooks, or non-zeros + bitmask).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from asr.bench.latency import bench_latency
from asr.checkpoint import load_model, read_checkpoint
from asr.compress import compress_config
from asr.compression import codebooks, fp32_bytes, masks, model_bytes
from asr.compression.common import codebook_bits
from asr.config import to_dict
from asr.data.dataset import load_cuts
from asr.data.librispeech import test_set
from asr.errors import UserError
from asr.fileio import write_text_atomic
from asr.metrics import paired_bootstrap, read_recogs
from asr.train import train
from export.folder import export_onnx
from export.nna.emulate import emulate

REPO = Path(__file__).resolve().parents[2]

RUNS = {  # run name -> recipe config (its compression.method picks the method)
    "s8bqat-4bit": "recipes/synth/compress-s8bqat.yaml",
    "gq-4bit": "recipes/synth/compress-gq.yaml",
    "gq-4bit-1bit-layer": "recipes/synth/compress-gq-1bit.yaml",
    "gq-6bit": "recipes/synth/compress-gq-6bit.yaml",
    "csp-50": "recipes/synth/compress-csp.yaml",
    "magnitude-50": "recipes/synth/compress-magnitude.yaml",
    "qat-int8": "recipes/synth/compress-qat.yaml",
    "qat-int8-60": "recipes/synth/compress-qat-60.yaml",
    "aat-int8": "recipes/synth/compress-aat.yaml",
    "aat-int8-320": "recipes/synth/compress-aat-320.yaml",
}
INT8_METHODS = ("qat", "aat")  # deployed as the int8 NNA program: bytes are the lowered model's


def _method_of(config: str) -> str:
    return yaml.safe_load(Path(config).read_text())["compression"]["method"]


def _finished(run_dir: Path, checkpoint: str, config: str) -> bool:
    """A final.pt of this recipe, fine-tuned from this checkpoint."""
    final = run_dir / "final.pt"
    if not final.is_file():
        return False
    want = to_dict(compress_config(checkpoint, _method_of(config), config, exp_dir=str(run_dir)))
    return read_checkpoint(final)["config"] == want


def _write(path: Path, rows: list) -> list:
    """Merge ``rows`` into the results file: rows of runs not in this invocation stay."""
    names = {r["run"] for r in rows}
    kept = [r for r in json.loads(path.read_text()) if r["run"] not in names] if path.is_file() else []
    order = ["fp32", "int8-ptq", *RUNS]
    merged = sorted(kept + rows, key=lambda r: order.index(r["run"]) if r["run"] in order else len(order))
    write_text_atomic(path, json.dumps(merged, indent=1) + "\n")
    return merged


def _baseline(path: Path, fp32: int, args) -> dict | None:
    """The fp32 and int8-PTQ numbers of an earlier run of the same model, test set and search."""
    rows = {r["run"]: r for r in json.loads(path.read_text())} if path.is_file() else {}
    a, b = rows.get("fp32"), rows.get("int8-ptq")
    if (not a or not b or a["fp32_bytes"] != fp32 or a["search"] != args.decoding_method
            or (args.max_utts and a["utts"] != args.max_utts)):
        return None
    return {"float_wer": a["wer_float"], "nna_wer": b["wer_nna"], "nna_bytes": b["bytes"], "num_utts": a["utts"],
            "onnx": (a["wer_onnx_int8"], a["onnx_int8_bytes"]) if a.get("onnx_int8_flavour") == args.ort_int8 else None}


def _onnx_int8(checkpoint: str, args, max_utts: int) -> tuple[float, int]:
    """(WER %, bytes of the int8 graphs) of ``checkpoint`` exported as int8 ``args.ort_int8`` (static
    flavours calibrate on the checkpoint's dev cuts) and streamed by onnxruntime, one thread, over
    the first ``max_utts`` utterances of ``args.audio_dir`` in file-name order."""
    with tempfile.TemporaryDirectory(prefix="compression-onnx-") as d:
        export_onnx(checkpoint, d, int8=(args.ort_int8,))
        rows, _ = bench_latency(d, args.audio_dir, max_utts=max_utts, method=args.decoding_method, beam=args.beam,
                                engines=[f"onnx-int8-{args.ort_int8}"], threads=(1,))
    return round(rows[0]["wer"], 3), rows[0]["bytes"]


def _intervals(run_dir: Path, base_dir: Path, search: str) -> dict:
    """Paired-bootstrap 95 % intervals (percentage points) of the run's WER minus the baseline's:
    float against the float model, emulated NNA against int8 PTQ (None where a decode is missing;
    ``--compare`` passes any two runs' decode folders)."""
    out = {}
    for key, tag in (("float_minus_fp32", f"float-{search}"), ("nna_minus_ptq", f"nna-*-{search}")):
        run, base = sorted(run_dir.glob(f"recogs-{tag}.txt")), sorted(base_dir.glob(f"recogs-{tag}.txt"))
        out[key] = [round(v, 2) for v in paired_bootstrap(read_recogs(run[0]), read_recogs(base[0]))] if run and base else None
    return out


def _shape(model) -> dict:
    """bits: mean bits per compressed weight (codebooks); sparsity: zeros among the pruned weights."""
    books = [(getattr(m, n).numel(), codebook_bits(b)) for _, m, n, b in codebooks(model)]
    found = [m for *_, m in masks(model)]
    out = {}
    if books:
        out["bits"] = round(sum(n * b for n, b in books) / sum(n for n, _ in books), 3)
        out["bits_per_layer"] = {q: codebook_bits(b) for q, _, _, b in codebooks(model)}
    if found:
        out["sparsity"] = round(sum(int((~m).sum()) for m in found) / sum(m.numel() for m in found), 4)
    return out


def table(rows: list[dict]) -> str:
    """The results rows as the README's markdown table."""

    def num(v) -> str:
        return "" if v is None else f"{v:.2f}"

    def ci(v) -> str:
        return "" if not v else f"{v[0]:+.2f} [{v[1]:+.2f}, {v[2]:+.2f}]"

    first = rows[0]
    lines = [f"{first['utts']} test utterances, {first['search']}; float32 {first['fp32_bytes']} bytes, WER {first['fp32_wer']:.2f} %",
             "| run | method | bits / sparsity | bytes on device | x smaller | WER float % | rel. to fp32 | float - fp32 [95 % CI] | "
             "WER emulated NNA % | NNA - int8 PTQ [95 % CI] | WER onnxruntime int8 % | fine-tune min |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        shape = f"{row['bits']} bit" if "bits" in row else f"{100 * row['sparsity']:.0f} % zeros"
        rel = "" if row["wer_float"] is None else f"{100 * (row['wer_float'] / row['fp32_wer'] - 1):+.1f} %"
        lines.append(f"| {row['run']} | {row['method']} | {shape} | {row['bytes']} | {row['fp32_bytes'] / row['bytes']:.2f} | "
                     f"{num(row['wer_float'])} | {rel} | {ci(row.get('float_minus_fp32'))} | {num(row['wer_nna'])} | "
                     f"{ci(row.get('nna_minus_ptq'))} | {num(row.get('wer_onnx_int8'))} | {row.get('fine_tune_minutes', '')} |")
    return "\n".join(lines)



def run(args) -> None:
    args.runs = args.runs or list(RUNS)
    unknown = sorted(set(args.runs) - set(RUNS))
    if unknown:
        raise UserError(f"--runs {' '.join(unknown)}: unknown run; choose from {', '.join(RUNS)}")
    if args.report:
        path = Path(args.out) / "results.json"
        if not path.is_file():
            raise UserError(f"{path}: no results file; run the bench first (without --report)")
        print(table(json.loads(path.read_text())))
        return
    if args.compare:
        dirs = [Path(args.out) / ("fp32" if run == "fp32" else f"{run}/decode") for run in args.compare]
        missing = [str(d) for d in dirs if not sorted(d.glob(f"recogs-*-{args.decoding_method}.txt"))]
        if missing:
            raise UserError(f"{missing[0]}: no decodes of this run; run the bench for it first")
        got = _intervals(dirs[0], dirs[1], args.decoding_method)
        for what, key in (("float", "float_minus_fp32"), ("emulated NNA", "nna_minus_ptq")):
            v = got[key]
            print(f"{args.compare[0]} - {args.compare[1]}, {what}: " + ("no decode" if v is None else f"{v[0]:+.2f} [{v[1]:+.2f}, {v[2]:+.2f}]"))
        return
    if not args.checkpoint or not args.cuts:
        raise UserError("asr bench compression: --checkpoint and --cuts are required (or --report / --compare)")
    if args.audio_dir:
        test_set(args.audio_dir, 1)  # a folder without a test set fails here, not after the training

    def evaluate(checkpoint: str, out_dir: str) -> dict:  # float and emulated-NNA WER of one checkpoint
        return emulate(checkpoint, test, out_dir, num_calib=args.num_calib, method=args.decoding_method, beam=args.beam)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    test = args.cuts
    tmp = None
    if args.max_utts > 0:
        tmp = tempfile.mkdtemp(prefix="compression-bench-")
        test = str(Path(tmp) / "cuts_test.jsonl.gz")
        load_cuts(args.cuts).subset(first=args.max_utts).to_file(test)
    try:
        float_model = load_model(args.checkpoint)[0]
        fp32 = fp32_bytes(float_model)
        base = _baseline(out / "results.json", fp32, args) if args.reuse_baseline else None
        base = base or evaluate(args.checkpoint, str(out / "fp32"))
        common = {"fp32_bytes": fp32, "fp32_wer": round(base["float_wer"], 3), "utts": base["num_utts"],
                  "search": args.decoding_method}

        def onnx(checkpoint: str, reuse=None) -> dict:  # the onnxruntime int8 columns (none without --audio-dir)
            if not args.audio_dir:
                return {}
            wer, size = reuse or _onnx_int8(checkpoint, args, base["num_utts"])
            return {"wer_onnx_int8": wer, "onnx_int8_bytes": size, "onnx_int8_flavour": args.ort_int8}

        rows = [
            {"run": "fp32", "method": "fp32", "bits": 32, "bytes": fp32, "wer_float": round(base["float_wer"], 3),
             "wer_nna": None, **common, **onnx(args.checkpoint, base.get("onnx"))},
            {"run": "int8-ptq", "method": "int8-ptq", "bits": 8, "bytes": base["nna_bytes"], "wer_float": None,
             "wer_nna": round(base["nna_wer"], 3), **common},
        ]
        print(f"fp32: WER {base['float_wer']:.2f} %, int8 PTQ on the NNA {base['nna_wer']:.2f} %", flush=True)
        for name in args.runs:
            config = str(REPO / RUNS[name])
            run_dir = out / name
            started = time.perf_counter()
            if args.retrain or not _finished(run_dir, args.checkpoint, config):
                if run_dir.exists():
                    shutil.rmtree(run_dir)
                train(compress_config(args.checkpoint, _method_of(config), config, exp_dir=str(run_dir)))
            final = str(run_dir / "final.pt")
            model, _, ckpt = load_model(final)
            r = evaluate(final, str(run_dir / "decode"))
            method = _method_of(config)
            shape = {"bits": 8} if method in INT8_METHODS else _shape(model)
            size = r["nna_bytes"] if method in INT8_METHODS else model_bytes(model)
            row = {"run": name, "method": method, **shape, "bytes": size,
                   "wer_float": round(r["float_wer"], 3), "wer_nna": round(r["nna_wer"], 3), "nna_bytes": r["nna_bytes"],
                   **common, "fine_tune_minutes": round(ckpt.get("train_seconds", 0.0) / 60, 2),
                   "config": RUNS[name], **_intervals(run_dir / "decode", out / "fp32", args.decoding_method),
                   **onnx(final)}
            rows.append(row)
            _write(out / "results.json", rows)
            print(f"{name}: {row['bytes']} bytes, WER float {row['wer_float']:.2f} % / NNA {row['wer_nna']:.2f} % "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
        rows = _write(out / "results.json", rows)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    print(table(rows))
    print(f"wrote {out / 'results.json'}")
