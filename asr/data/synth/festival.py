"""Festival (the Edinburgh speech synthesis system, Debian's ``festival`` package with its HTS and
diphone voices) through one batch script per call.

Festival's start-up (about 0.2 s, loading the lexicon and the voice) dwarfs one utterance, so
``synthesize_festival`` renders a whole list in one ``festival -b`` run: a Scheme script that selects
each item's voice, sets its ``Duration_Stretch`` and saves its waveform. Output rate is the voice's own
(32 kHz for the HTS voice, 16 kHz for the diphone voice).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from asr.audio import read_pcm
from asr.errors import UserError

FESTIVAL = "festival"
_SAFE_TEXT = re.compile(r"^[a-z' ]+$")  # our normalised transcripts; nothing Scheme could misread
_SAFE_VOICE = re.compile(r"^[a-z0-9_]+$")


@functools.cache  # once per process (a missing binary raises, which is not cached)
def check_festival() -> str:
    """The path of the festival binary, or a UserError that says how to install it."""
    path = shutil.which(FESTIVAL)
    if path is None:
        raise UserError(
            "festival is not installed; install Debian's festival festvox-us-slt-hts festvox-kallpc16k "
            "(apt-get install ...), which `make` does"
        )
    return path


def synthesize_festival(items: list[tuple[str, str, float]]) -> list[tuple[np.ndarray, int]]:
    """``[(text, voice, duration_stretch), ...]`` -> ``[(int16 samples, sample rate), ...]``; ``voice``
    names a festival voice function without its ``voice_`` prefix (e.g. ``kal_diphone``)."""
    if not items:
        return []
    binary = check_festival()
    with tempfile.TemporaryDirectory(prefix="ondevice-asr-festival-") as tmp:
        lines = []
        for k, (text, voice, stretch) in enumerate(items):
            if not _SAFE_TEXT.match(text) or not _SAFE_VOICE.match(voice):
                raise ValueError(f"festival item {k}: text {text!r} or voice {voice!r} is not plain lowercase")
            lines += [f"(voice_{voice})", f"(Parameter.set 'Duration_Stretch {stretch:.4f})",
                      f'(utt.save.wave (utt.synth (Utterance Text "{text}")) "{Path(tmp) / f"{k}.wav"}" \'riff)']
        script = Path(tmp) / "batch.scm"
        script.write_text("\n".join(lines) + "\n")
        done = subprocess.run([binary, "-b", str(script)], capture_output=True, text=True)
        missing = [k for k in range(len(items)) if not (Path(tmp) / f"{k}.wav").is_file()]
        if done.returncode != 0 or missing:
            raise RuntimeError(f"festival failed ({done.returncode}) on {len(missing)} of {len(items)} items, "
                               f"e.g. {items[missing[0]] if missing else ''}: {done.stderr.strip()[-500:]}")
        return [read_pcm(Path(tmp) / f"{k}.wav") for k in range(len(items))]
