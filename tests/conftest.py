"""Shared fixtures: a tiny LibriSpeech-layout corpus, its manifests and features, a tiny checkpoint,
and helpers that run the ``asr`` CLI and check the one-line error contract.

The session fixtures are built once (a few seconds in all) and must not be modified by tests: a
test that corrupts files copies the corpus first (``copy_corpus``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# Environment for CLI subprocesses: one thread each (the machine is shared), no colour codes.
_SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}


# ---- the tiny corpus ---------------------------------------------------------------------------

FALLBACK_SENTENCES = {
    "train": ["PLAY SOME MUSIC", "CALL MOM", "SET A TIMER FOR TEN MINUTES", "WHAT IS THE WEATHER",
              "TURN ON THE LIGHTS", "STOP THE ALARM"],
    "dev": ["CALL DAD", "PLAY JAZZ"],
    "test": ["OPEN THE DOOR", "WHAT TIME IS IT"],
}


def _write_fallback_corpus(out: Path) -> None:
    """A few noisy tone flacs with LibriSpeech-style transcripts (used if ``asr.data.synth`` fails)."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    for p, (part, sentences) in enumerate(FALLBACK_SENTENCES.items()):
        for i, text in enumerate(sentences):
            speaker, chapter = 100 + p * 10 + i % 2, 1 + i % 3
            chapter_dir = out / part / str(speaker) / str(chapter)
            chapter_dir.mkdir(parents=True, exist_ok=True)
            utt_id = f"{speaker}-{chapter}-{i:04d}"
            n = 16000 * (1 + i % 3) // 2 + 137 * i  # 0.5-1.5 s, not a whole number of frames
            t = np.arange(n) / 16000
            audio = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.02 * rng.standard_normal(n)
            sf.write(chapter_dir / f"{utt_id}.flac", audio, 16000, subtype="PCM_16")
            with open(chapter_dir / f"{speaker}-{chapter}.trans.txt", "a") as f:
                f.write(f"{utt_id} {text}\n")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A LibriSpeech-layout tree with parts ``train``, ``dev``, ``test`` (read-only for tests).

    Made by the project's synthesizer (``prepare_synth(size="tiny")``, ~6 s on one core) when it
    works here, otherwise by :func:`_write_fallback_corpus`.
    """
    out = tmp_path_factory.mktemp("corpus") / "tiny"
    try:
        from asr.data.synth import prepare_synth

        prepare_synth(out, size="tiny", seed=0, num_workers=1)
        for extra in ("test-open", "test-names", "test-engine"):  # the tests need three parts, as the fallback
            shutil.rmtree(out / extra)
    except Exception as e:  # synthesizer missing or broken here: the tests only need the layout
        warnings.warn(f"asr.data.synth unavailable ({type(e).__name__}: {e}); using tone flacs instead")
        shutil.rmtree(out, ignore_errors=True)
        _write_fallback_corpus(out)
    return out


def tiny_flacs(corpus: Path) -> list[Path]:
    """The corpus's flac files, the ``test`` part first: the synth corpus keeps its test split's audio
    fixed across format versions, so tests that feed a few files to a model keep their inputs."""
    return sorted(corpus.glob("*/*/*/*.flac"), key=lambda p: (p.parts[-4] != "test", str(p)))


@pytest.fixture
def copy_corpus(tiny_corpus, tmp_path):
    """A private, writable copy of the tiny corpus (for tests that damage files)."""

    def copy() -> Path:
        dst = tmp_path / "corpus"
        shutil.copytree(tiny_corpus, dst)
        return dst

    return copy


@pytest.fixture(scope="session")
def tiny_manifests(tiny_corpus, tmp_path_factory) -> Path:
    """``prepare_librispeech`` output for every part of the tiny corpus."""
    from asr.data.librispeech import prepare_librispeech

    out = tmp_path_factory.mktemp("manifests")
    prepare_librispeech(str(tiny_corpus), str(out))
    return out


@pytest.fixture(scope="session")
def tiny_fbank(tiny_manifests, tmp_path_factory) -> Path:
    """``compute_fbank`` output for every part, with speed perturbation of ``train``."""
    from asr.data.fbank import compute_fbank

    out = tmp_path_factory.mktemp("fbank")
    compute_fbank(str(tiny_manifests), str(out), ["train", "dev", "test"], ["train"], progress=False)
    return out


# ---- a tiny model checkpoint -------------------------------------------------------------------

BPE_SENTENCES = [
    "PLAY SOME MUSIC BY THE BEATLES", "CALL MOM ON HER MOBILE", "SET A TIMER FOR TEN MINUTES",
    "WHAT IS THE WEATHER IN PARIS TOMORROW", "TURN ON THE KITCHEN LIGHTS", "STOP THE ALARM",
    "SEND A MESSAGE TO JOHN SAYING I AM LATE", "NAVIGATE TO THE NEAREST GAS STATION",
]


@dataclass(frozen=True)
class TinyCheckpoint:
    path: Path  # an untrained lstm_tiny written by asr.checkpoint.save_checkpoint
    bpe_model: Path  # the BPE model its config names (data.bpe_model)
    vocab_size: int


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> TinyCheckpoint:
    """An untrained ``lstm_tiny`` checkpoint plus the BPE model it names; loads with ``load_model``."""
    import torch

    from asr.checkpoint import save_checkpoint
    from asr.config import DataConfig, LoopConfig, TrainConfig, to_dict
    from asr.models.registry import build_model, lstm_tiny
    from asr.tokenizer import Tokenizer, train_bpe

    root = tmp_path_factory.mktemp("tiny_ckpt")
    bpe = train_bpe(BPE_SENTENCES, str(root / "lang_bpe"), vocab_size=40)
    vocab = Tokenizer(bpe).vocab_size
    cfg = TrainConfig(model=lstm_tiny(vocab), data=DataConfig(bpe_model=str(bpe)),
                      train=LoopConfig(exp_dir=str(root / "exp"), max_steps=1))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    path = root / "exp" / "final.pt"
    save_checkpoint({"config": to_dict(cfg), "model": model.state_dict(), "step": 0, "train_seconds": 0.0,
                     "params": sum(p.numel() for p in model.parameters())}, path)
    return TinyCheckpoint(path, bpe, vocab)


def make_emitting(src: Path, dst: Path) -> Path:
    """A copy of checkpoint ``src`` with its blank logit pushed down and its joiner sharpened: untrained,
    it then emits many tokens that depend on the audio (an all-blank model would make comparisons of
    decoders, e.g. ours against sherpa-onnx, vacuous)."""
    from asr.checkpoint import read_checkpoint, save_checkpoint

    ckpt = read_checkpoint(src)
    state = dict(ckpt["model"])
    state["joiner.output.bias"] = state["joiner.output.bias"].clone()
    state["joiner.output.bias"][0] -= 3.0
    state["joiner.output.weight"] = state["joiner.output.weight"] * 8
    save_checkpoint({**ckpt, "model": state}, dst)
    return dst


@pytest.fixture(scope="session")
def emitting_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint through :func:`make_emitting`."""
    return make_emitting(tiny_checkpoint.path, tmp_path_factory.mktemp("emitting") / "ckpt.pt")


# ---- running the CLI ---------------------------------------------------------------------------


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_asr_subprocess(*args, cwd=None) -> CliResult:
    """``python -m asr.cli ARGS`` in a fresh interpreter (what a user sees, import warnings included)."""
    p = subprocess.run([sys.executable, "-m", "asr.cli", *map(str, args)], capture_output=True, text=True,
                       cwd=cwd, env=_SUBPROCESS_ENV, timeout=120)
    return CliResult(p.returncode, p.stdout, p.stderr)


def start_asr_subprocess(*args, cwd=None) -> subprocess.Popen:
    """Like :func:`run_asr_subprocess` but not waiting, so several can start together."""
    return subprocess.Popen([sys.executable, "-m", "asr.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, env=_SUBPROCESS_ENV)


def finish_asr_subprocess(proc: subprocess.Popen) -> CliResult:
    out, err = proc.communicate(timeout=120)
    return CliResult(proc.returncode, out, err)


@pytest.fixture
def asr_cli(capfd):
    """Run ``asr.cli.main(ARGS)`` in this process; returns a :class:`CliResult`.

    ~50x cheaper than a subprocess (no fresh ``import torch``). Uncaught exceptions propagate and fail
    the test (the traceback a user would see). Python warnings raised during the command, which
    pytest would otherwise swallow, are appended to ``stderr`` as the interpreter would print them.
    """
    from asr.cli import main

    def run(*args) -> CliResult:
        capfd.readouterr()
        with warnings.catch_warnings(record=True) as caught:
            # The interpreter's default filters (what a user of `asr` sees), not pytest's.
            warnings.simplefilter("default")
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.filterwarnings("ignore", category=category)
            code = main([str(a) for a in args])
        out, err = capfd.readouterr()
        err += "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught)
        return CliResult(code, out, err)

    return run


# A tqdm progress line, e.g. "fbank train:  17%|█▋        | 2/12 [00:00<00:01,  6.85it/s]".
_PROGRESS = re.compile(r"^[^:]*: +\d+%\|.*\]$")


def assert_user_error(result: CliResult, *must_contain: str, progress_bars: bool = False) -> str:
    """The error contract: exit 2, stderr is one ``error:`` line naming ``must_contain``, no traceback.

    ``progress_bars``: the verb draws tqdm bars on stderr before failing; those lines are dropped.
    """
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, f"exit code {result.returncode}, stderr: {result.stderr!r}"
    lines = result.stderr.splitlines()  # also splits tqdm's "\r" redraws
    if progress_bars:
        lines = [line for line in lines if line.strip() and not _PROGRESS.match(line)]
    assert len(lines) == 1, f"stderr should be exactly one line, got {len(lines)}: {result.stderr!r}"
    assert lines[0].startswith("error: "), lines[0]
    for text in must_contain:
        assert str(text) in lines[0], f"{text!r} not in {lines[0]!r}"
    return lines[0]
