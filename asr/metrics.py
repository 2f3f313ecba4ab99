"""Word error rate with kaldialign (Levenshtein alignment, as icefall's ``errs-*`` files), the
biasing metrics U-WER and B-WER (:func:`biased_word_errors`), and a wake-word detector's false rejects
against false alarms per hour (:func:`det_points`, :func:`frr_at`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import kaldialign
import numpy as np

from asr.errors import UserError


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, number of reference words)."""
    r, h = ref.split(), hyp.split()
    return kaldialign.edit_distance(r, h)["total"], len(r)


@dataclass
class ErrorCounts:
    """Word errors of one kind of word over some utterances; ``rate`` in percent."""

    ref_words: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """100 x errors / reference words (NaN without reference words: B-WER of a list no utterance says)."""
        return 100.0 * self.errors / self.ref_words if self.ref_words else float("nan")

    @property
    def recall(self) -> float:
        """100 x reference words recognised (neither substituted nor deleted) / reference words: of the
        biased words, the bias-word recall (insertions do not lower it; B-WER counts them)."""
        return 100.0 * (self.ref_words - self.substitutions - self.deletions) / self.ref_words if self.ref_words \
            else float("nan")

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(self.ref_words + other.ref_words, self.substitutions + other.substitutions,
                           self.deletions + other.deletions, self.insertions + other.insertions)


# Le et al. 2021's scoring (fbai-speech, is21_deep_bias/score.py): a substitution costs 4, an insertion or a
# deletion 3, so "A B" -> "B A" aligns as deletion, match, insertion (6) rather than two substitutions (8).
SUB_COST, INS_DEL_COST = 4, 3


def _align_codes(ref: list[str], hyp: list[str]) -> list[tuple[str, int, int]]:
    """The alignment of score.py as (code, ref index, hyp index) in order, code one of ``match``, ``sub``,
    ``del`` (hyp index -1), ``ins`` (ref index -1). At equal cost a cell prefers the diagonal, then an
    insertion, then a deletion (an option replaces the best only when strictly cheaper), as score.py does."""
    rows, cols = len(ref) + 1, len(hyp) + 1
    cost = [[0] * cols for _ in range(rows)]
    back = [[""] * cols for _ in range(rows)]
    for i in range(rows):
        for j in range(cols):
            if i == 0 and j == 0:
                continue
            if i == 0:
                cost[i][j], back[i][j] = cost[i][j - 1] + INS_DEL_COST, "ins"
            elif j == 0:
                cost[i][j], back[i][j] = cost[i - 1][j] + INS_DEL_COST, "del"
            else:
                same = ref[i - 1] == hyp[j - 1]
                best, move = cost[i - 1][j - 1] + (0 if same else SUB_COST), "match" if same else "sub"
                if cost[i][j - 1] + INS_DEL_COST < best:
                    best, move = cost[i][j - 1] + INS_DEL_COST, "ins"
                if cost[i - 1][j] + INS_DEL_COST < best:
                    best, move = cost[i - 1][j] + INS_DEL_COST, "del"
                cost[i][j], back[i][j] = best, move
    codes, i, j = [], len(ref), len(hyp)
    while i or j:
        move = back[i][j]
        if move == "ins":
            codes.append((move, -1, j - 1))
            j -= 1
        elif move == "del":
            codes.append((move, i - 1, -1))
            i -= 1
        else:
            codes.append((move, i - 1, j - 1))
            i, j = i - 1, j - 1
    return codes[::-1]


def biased_word_errors(ref: str, hyp: str, bias_words: set[str]) -> tuple[ErrorCounts, ErrorCounts, ErrorCounts]:
    """(all words, unbiased words, biased words) errors of one utterance, as Le et al. 2021 score them
    ("Contextualized streaming end-to-end speech recognition with trie-based deep biasing and shallow
    fusion"; fbai-speech, is21_deep_bias/score.py): ``bias_words`` are the utterance's own words that its
    bias list holds (not the distractors). A reference word counts in B-WER if it is a bias word, else in
    U-WER (its substitution and deletion too); an inserted word counts in B-WER if it is a bias word, else
    in U-WER. WER = U-WER + B-WER in errors and reference words. The alignment is score.py's
    (:func:`_align_codes`), not kaldialign's, so WER can differ from :func:`word_errors` by ties."""
    r, h = ref.split(), hyp.split()
    counts = {"all": ErrorCounts(), "u": ErrorCounts(), "b": ErrorCounts()}
    for code, i, j in _align_codes(r, h):
        word = h[j] if code == "ins" else r[i]
        for key in ("all", "b" if word in bias_words else "u"):
            c = counts[key]
            if code == "ins":
                c.insertions += 1
                continue
            c.ref_words += 1
            c.substitutions += code == "sub"
            c.deletions += code == "del"
    return counts["all"], counts["u"], counts["b"]


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
    return paired_bootstrap_counts(ea, eb, n, resamples, level, seed)


def paired_bootstrap_counts(errors_a, errors_b, words, resamples: int = 1000, level: float = 0.95,
                            seed: int = 0) -> tuple[float, float, float]:
    """:func:`paired_bootstrap` on per-utterance counts: errors of system a and of system b and the
    reference words they are rates of (e.g. B-WER: errors on bias words and the bias words), in the same
    utterance order."""
    ea, eb, n = (np.asarray(v, dtype=np.float64) for v in (errors_a, errors_b, words))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(n), size=(resamples, len(n)))
    diffs = 100.0 * (ea[idx].sum(1) - eb[idx].sum(1)) / np.maximum(n[idx].sum(1), 1)
    tail = 100.0 * (1 - level) / 2
    return float(100.0 * (ea.sum() - eb.sum()) / max(n.sum(), 1)), float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail))


# ---- wake words: false rejects against false alarms per hour ------------------------------------------


@dataclass
class OperatingPoint:
    """A wake-word detector at one score threshold: ``frr`` and ``recall`` in percent of positive
    utterances, false alarms per hour of wake-word-free audio, precision and F1 over detections."""

    threshold: float
    frr: float
    fa_per_hour: float
    precision: float
    recall: float
    f1: float


def det_points(positive_scores: list[float | None], false_alarm_scores: list[float],
               negative_hours: float) -> list[OperatingPoint]:
    """The DET curve's points, one per distinct score (thresholds ascending, so false alarms fall).

    ``positive_scores``: per utterance that says the wake word, the best score of a detection of it (None:
    never detected); ``false_alarm_scores``: the score of every detection in ``negative_hours`` of audio
    that does not say it. A detection counts at threshold t when its score is >= t."""
    if negative_hours <= 0 or not positive_scores:
        raise ValueError("need positive utterances and a positive number of negative hours")
    detected = np.sort(np.array([s for s in positive_scores if s is not None], dtype=np.float64))
    alarms = np.sort(np.array(false_alarm_scores, dtype=np.float64))
    points = []
    for t in sorted(set(detected.tolist()) | set(alarms.tolist()) | {float("inf")}):
        tp = len(detected) - int(np.searchsorted(detected, t, side="left"))
        fa = len(alarms) - int(np.searchsorted(alarms, t, side="left"))
        points.append(operating_point(t, tp, len(positive_scores), fa, negative_hours))
    return points


def operating_point(threshold: float, detected: int, positives: int, false_alarms: int, negative_hours: float) -> OperatingPoint:
    """A detector at one threshold: ``detected`` of ``positives`` utterances found, ``false_alarms`` in
    ``negative_hours`` of wake-word-free audio."""
    recall = detected / positives
    precision = detected / (detected + false_alarms) if detected + false_alarms else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return OperatingPoint(threshold, 100 * (1 - recall), false_alarms / negative_hours, 100 * precision, 100 * recall,
                          100 * f1)


def errors_after(ref: str, hyp: str, word: str) -> tuple[int, int]:
    """(word errors, reference words) of the part of ``ref`` after its first ``word`` (a wake word's command):
    ``ref`` and ``hyp`` are aligned whole (kaldialign), and the errors counted are those on the pairs
    after the one that holds the reference's ``word`` (substitutions, deletions and insertions there).
    A reference without ``word``: (0, 0)."""
    r, h = ref.split(), hyp.split()
    if word not in r:
        return 0, 0
    pairs = kaldialign.align(r, h, "*")
    at = next(i for i, (a, _) in enumerate(pairs) if a == word)
    after = pairs[at + 1 :]
    return sum(a != b for a, b in after), sum(a != "*" for a, _ in after)


def frr_at(points: list[OperatingPoint], fa_per_hour: float) -> OperatingPoint:
    """The point with the lowest false-reject rate among those with at most ``fa_per_hour`` false alarms
    per hour (the lowest threshold that keeps the alarms that rare)."""
    allowed = [p for p in points if p.fa_per_hour <= fa_per_hour]
    return min(allowed, key=lambda p: (p.frr, -p.threshold))
