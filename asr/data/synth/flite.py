"""flite (CMU's small synthesizer, Debian's ``flite`` package) through its command line.

Each call runs ``flite`` once (about 10-50 ms): rate by ``duration_stretch`` and pitch by ``f0_shift``
(flite's own features, which both its diphone and its clustergen voices honour). Output is 16 kHz.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from asr.audio import read_pcm
from asr.errors import UserError

FLITE = "flite"


@functools.cache  # once per process (a missing binary raises, which is not cached)
def check_flite() -> str:
    """The path of the flite binary, or a UserError that says how to install it."""
    path = shutil.which(FLITE)
    if path is None:
        raise UserError("flite is not installed; install Debian's flite (apt-get install flite), which `make` does")
    return path


def synthesize_flite(text: str, voice: str, duration_stretch: float, f0_shift: float) -> tuple[np.ndarray, int]:
    """(int16 samples, sample rate) of ``text`` spoken by flite voice ``voice``."""
    binary = check_flite()
    with tempfile.TemporaryDirectory(prefix="ondevice-asr-flite-") as tmp:
        out = Path(tmp) / "out.wav"
        command = [binary, "-voice", voice, "--setf", f"duration_stretch={duration_stretch:.4f}",
                   "--setf", f"f0_shift={f0_shift:.4f}", "-t", text, "-o", str(out)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not out.is_file():
            raise RuntimeError(f"flite failed ({done.returncode}) for {text!r} with voice {voice}: {done.stderr.strip()}")
        return read_pcm(out)
