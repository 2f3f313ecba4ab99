"""``make demo``'s recipe end to end, every stage through the command line, on the tiny corpus with a
small model: synthesize -> manifests -> fbank -> BPE and the n-gram LM -> train -> decode -> export (fp32 + three int8
flavours) -> ``asr stream`` -> the latency benchmark against sherpa-onnx. ``make e2e`` runs only
these; ``make test`` runs them too (CI runs whole recipes on tiny data, as icefall's does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL_MODEL = [
    "train.max_steps=30", "train.valid_every=30", "train.save_every=30", "train.max_minutes=0", "train.progress=false",
    "data.max_duration_s=20", "model.encoder.num_layers=1", "model.encoder.hidden_dim=64",
    "model.encoder.subsampling_dim=32", "model.encoder.subsampling_channels=8", "model.predictor.embed_dim=32",
    "model.joiner_dim=32", "model.loss.warmup_steps=10", "optim.warmup_steps=5",
]


@pytest.mark.e2e
def test_synth_recipe_runs_every_stage(tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
    cmd = ["bash", str(REPO / "recipes" / "synth" / "run.sh"), "--size", "tiny", "--exp", "exp/e2e",
           "--config", str(REPO / "recipes" / "synth" / "lstm.yaml"), "--bench-utts", "2"]
    for override in SMALL_MODEL:
        cmd += ["--set", override]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    exp = tmp_path / "exp" / "e2e"
    results = json.loads((exp / "results.json").read_text())
    # stage 5 (decode), 8 (latency benchmark): the keys the README's demo table is made of
    for key in ("test_wer", "test_open_wer", "test_names_wer", "test_engine_wer", "params", "decode_rtf", "onnx_fp32_wer", "onnx_int8_wer", "stream_rtf", "sherpa_rtf",
                "fp32_encoder_bytes", "int8_encoder_bytes"):
        assert key in results, (key, results)
    assert results["decode_lm_order"] == 8  # stage 3 counted the language model, stage 5 fused it
    assert results["sherpa_tokens_match"] is True  # sherpa-onnx decodes our export token for token
    for folder in ("onnx", "onnx/int8-dynamic", "onnx/int8-static", "onnx/int8-accelerator"):
        assert (exp / folder / "encoder.onnx").is_file() and (exp / folder / "bpe.model").is_file()
    lines = [json.loads(line) for line in p.stdout.splitlines() if line.startswith('{"stream"')]
    assert lines and all(r["type"] == "final" for r in lines)  # stage 7 ran asr stream --no-partials
    assert (exp / "latency.json").is_file() and (exp / "latency.png").is_file()
