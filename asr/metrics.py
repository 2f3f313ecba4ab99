"""Word error rate with kaldialign (Levenshtein alignment, as icefall's ``errs-*`` files)."""

from __future__ import annotations

from pathlib import Path

import kaldialign
import numpy as np

from asr.errors import UserError


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, number of reference words)."""
    r, h = ref.split(), hyp.split()
    return kaldialign.edit_distance(r, h)["total"], len(r)


def alignment(ref: str, hyp: str) -> str:
    """``REF->HYP`` pairs for the errors file: correct words plain, errors as ``(ref->hyp)``."""
    out = []
    for r, h in kaldialign.align(ref.split(), hyp.split(), "*"):
        out.append(r if r == h else f"({r}->{h})")
    return " ".join(out)


def read_recogs(path) -> dict[str, tuple[str, str]]:
    """{utterance: (ref, hyp)} from a ``recogs-*.txt`` file of ``asr decode`` / ``asr emulate``."""
    out: dict[str, list[str]] = {}
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        utt, sep, text = line.partition(":\t")
        if not sep or not text.startswith(("ref=", "hyp=")):
            raise UserError(f"{path}:{i}: not a recogs line ('ID:<tab>ref=...' or 'ID:<tab>hyp=...'); pass a recogs-*.txt file")
        out.setdefault(utt, ["", ""])[text.startswith("hyp=")] = text[4:]
    return {u: (r, h) for u, (r, h) in out.items()}


def paired_bootstrap(a: dict[str, tuple[str, str]], b: dict[str, tuple[str, str]], resamples: int = 1000,
                     level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(WER(a) - WER(b), low, high) in percentage points for two systems' results on the same
    utterances (``read_recogs``): the interval is the ``level`` percentile interval of the
    difference over ``resamples`` resamplings of the utterances with replacement, each system
    scored on the same resampled set (Bisani & Ney, "Bootstrap estimates for confidence intervals
    in ASR performance evaluation", ICASSP 2004)."""
    if set(a) != set(b) or not a:
        raise UserError(f"paired_bootstrap: the two systems scored different utterances ({len(set(a) ^ set(b))} "
                        "differ); compare decodes of the same test set")
    utts = sorted(a)
    ea, n = np.array([word_errors(*a[u]) for u in utts]).T
    eb = np.array([word_errors(*b[u])[0] for u in utts])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(utts), size=(resamples, len(utts)))
    diffs = 100.0 * (ea[idx].sum(1) - eb[idx].sum(1)) / np.maximum(n[idx].sum(1), 1)
    tail = 100.0 * (1 - level) / 2
    return float(100.0 * (ea.sum() - eb.sum()) / max(n.sum(), 1)), float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail))
