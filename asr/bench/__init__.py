"""The benchmarks behind ``asr bench NAME``: each runs the engines or methods it compares side by side
in one process tree and prints one table whose last line holds the ratios (these machines are noisy,
so ratios from one run, not absolute times across runs).

* ``loss``: the pruned RNN-T loss against torchaudio's full loss (step time, peak memory);
* ``emulator``: the NNA emulator's kernels against the NumPy reference, BLAS and onnxruntime, and
  the emulated transducer's real-time factor;
* ``latency``: PyTorch, ONNX fp32, every int8 flavour and sherpa-onnx as live-microphone sessions;
* ``compression``: every compression method from one float checkpoint (bytes, float, emulated-NNA and
  onnxruntime int8 WER, paired-bootstrap intervals);
* ``hotwords``: entity-word recall with and without hotwords, against sherpa-onnx;
* ``sherpa``: our onnxruntime recognizer against sherpa-onnx on whole files (WER, RTF, equal tokens);
* ``biasing``: no biasing, hotwords and the biasing adapter on per-utterance bias lists (WER, U-WER,
  B-WER, with and without the true words, decode RTF);
* ``long-stream``: the cost of each 100 ms over an hour-long stream without endpoints, with and without
  settled finals (first minute against last).

Each module has ``run(args)``; its options and example are in ``asr/cli.py``, which imports the
module only when its benchmark runs. Like the CLI, this package is the top of the layers: it may import ``export``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from asr.errors import UserError


def process_env(args) -> dict[str, str]:
    """The settings a benchmark's process must start with (each is read once, when it loads):
    ``emulator`` pins BLAS to one thread, like the serial kernels it is compared with; ``loss`` on the
    CPU has glibc return every freed block over 64 KiB, so that resident memory follows the live
    tensors (see each module's docstring)."""
    if args.benchmark == "emulator":
        return {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if args.benchmark == "loss" and args.device == "cpu":
        return {"MALLOC_MMAP_THRESHOLD_": "65536"}
    return {}


def reexec_with_env(env: dict[str, str], argv: list[str]) -> None:
    """Start this benchmark again (``python -m asr.cli ARGV``) with ``env`` set, unless it already is:
    for settings a process reads once at start (the allocator's mmap threshold, BLAS threads)."""
    if all(os.environ.get(k) == v for k, v in env.items()):
        return
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "asr.cli", *argv], {**os.environ, **env})


def json_process(cmd: list[str], what: str, env: dict[str, str] | None = None) -> dict:
    """Run ``cmd`` (an engine or client in its own process) and parse the JSON object it prints; a
    UserError naming ``what``, with the last line of its stderr, if it fails."""
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode:
        last = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
        raise UserError(f"{what} failed ({last[:300]})")
    return json.loads(p.stdout)
