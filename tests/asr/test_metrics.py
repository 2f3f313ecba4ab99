"""WER helpers: the recogs file format ``asr decode`` writes, the paired bootstrap interval
the compression bench reports (exact in degenerate cases, covering the truth when two systems are
equally good, excluding zero when one is clearly worse), and U-WER / B-WER on hand-made examples
worked out with the rules of fbai-speech's is21_deep_bias/score.py."""

from __future__ import annotations

import numpy as np
import pytest

from asr.errors import UserError
from asr.metrics import ErrorCounts, biased_word_errors, paired_bootstrap, read_recogs, word_errors


def test_word_errors():
    assert word_errors("A B C D", "A X C") == (2, 4)
    assert word_errors("A B", "A B C") == (1, 2)


# (ref, hyp, bias words) -> (all, unbiased, biased) as (ref words, subs, dels, ins), by score.py's rules:
# costs sub 4, ins/del 3; ties take the diagonal, then insertion, then deletion.
BIASED_CASES = [
    # a bias word misspelt: one substitution in B-WER, U-WER clean
    ("CALL ANNA NOW", "CALL ANA NOW", {"ANNA"}, (3, 1, 0, 0), (2, 0, 0, 0), (1, 1, 0, 0)),
    # a bias word inserted where the reference has none: an insertion in B-WER, no reference word
    ("PLAY MUSIC", "PLAY ZED MUSIC", {"ZED"}, (2, 0, 0, 1), (2, 0, 0, 0), (0, 0, 0, 1)),
    # swapped words: deletion + match + insertion (cost 6) beats two substitutions (8); the deleted and
    # the inserted word are both the bias word, so both errors land in B-WER (200 %)
    ("ANNA BOB", "BOB ANNA", {"ANNA"}, (2, 0, 1, 1), (1, 0, 0, 0), (1, 0, 1, 1)),
    # one word for one: a substitution (4) beats deletion + insertion (6); counted by the reference word
    ("HELLO", "ANNA", {"ANNA"}, (1, 1, 0, 0), (1, 1, 0, 0), (0, 0, 0, 0)),
    # a deleted bias word and an inserted ordinary word
    ("SEND ANNA A NOTE", "SEND A NOTE PLEASE", {"ANNA"}, (4, 0, 1, 1), (3, 0, 0, 1), (1, 0, 1, 0)),
    # empty hypothesis: every reference word deleted
    ("CALL ANNA", "", {"ANNA"}, (2, 0, 2, 0), (1, 0, 1, 0), (1, 0, 1, 0)),
]


@pytest.mark.parametrize("ref, hyp, bias, total, unbiased, biased", BIASED_CASES)
def test_biased_word_errors_by_score_py_rules(ref, hyp, bias, total, unbiased, biased):
    got = biased_word_errors(ref, hyp, bias)
    assert [(c.ref_words, c.substitutions, c.deletions, c.insertions) for c in got] == [total, unbiased, biased]
    assert got[1] + got[2] == got[0]


def test_biased_rates():
    all_, u, b = biased_word_errors("ANNA BOB", "BOB ANNA", {"ANNA"})
    assert (all_.rate, u.rate, b.rate) == (100.0, 0.0, 200.0)
    assert np.isnan(ErrorCounts().rate)
    # a tie between substitution and deletion + insertion never arises (4 < 6); kaldialign's unit costs
    # count the swap as 2 errors too, but as two substitutions
    assert word_errors("ANNA BOB", "BOB ANNA") == (2, 2)


def test_read_recogs_reads_what_decode_writes(tmp_path):
    path = tmp_path / "recogs-float-greedy.txt"
    path.write_text("u1:\tref=HELLO WORLD\nu1:\thyp=HELLO WORD\nu2:\tref=YES\nu2:\thyp=\n")
    assert read_recogs(path) == {"u1": ("HELLO WORLD", "HELLO WORD"), "u2": ("YES", "")}
    path.write_text("u1 HELLO\n")
    with pytest.raises(UserError, match="recogs-float-greedy.txt:1"):
        read_recogs(path)


def _system(rng, refs, p_err):
    """Each reference word replaced with probability p_err."""
    return {u: (r, " ".join("X" if rng.random() < p_err else w for w in r.split())) for u, r in refs.items()}


@pytest.fixture
def refs():
    rng = np.random.default_rng(0)
    return {f"u{i:03d}": " ".join(f"W{k}" for k in range(rng.integers(2, 12))) for i in range(300)}


def test_identical_systems_and_a_constant_shift(refs):
    a = {u: (r, r) for u, r in refs.items()}
    assert paired_bootstrap(a, a) == (0.0, 0.0, 0.0)
    # one more error in every utterance: the difference is 100 U / N in every resample of equal N...
    b = {u: (r, " ".join(["X"] + r.split()[1:])) for u, r in refs.items()}
    words = sum(len(r.split()) for r in refs.values())
    diff, lo, hi = paired_bootstrap(b, a)
    assert diff == pytest.approx(100 * len(refs) / words)
    assert lo < diff < hi  # ...which varies with the resampled lengths
    assert paired_bootstrap(a, b)[0] == pytest.approx(-diff)


def test_interval_covers_zero_for_equal_systems_and_excludes_it_for_a_worse_one(refs):
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(40):  # two systems with the same 15 % error rate: 0 inside the 95 % interval
        _, lo, hi = paired_bootstrap(_system(rng, refs, 0.15), _system(rng, refs, 0.15), resamples=400)
        covered += lo <= 0 <= hi
    assert covered >= 34
    diff, lo, hi = paired_bootstrap(_system(rng, refs, 0.25), _system(rng, refs, 0.15))
    assert 0 < lo < diff < hi and diff == pytest.approx(10, abs=3)


def test_different_utterances_are_refused(refs):
    a = {u: (r, r) for u, r in refs.items()}
    with pytest.raises(UserError, match="different utterances"):
        paired_bootstrap(a, dict(list(a.items())[:10]))


def test_det_points_and_frr_at_by_hand():
    """Positives scored 0.9, 0.5, never, 0.3; false alarms 0.4 and 0.6 in 2 hours."""
    from asr.metrics import det_points, frr_at

    points = det_points([0.9, 0.5, None, 0.3], [0.4, 0.6], negative_hours=2.0)
    got = [(p.threshold, round(p.frr, 2), p.fa_per_hour, round(p.precision, 2), round(p.f1, 2)) for p in points]
    assert got == [(0.3, 25.0, 1.0, 60.0, 66.67), (0.4, 50.0, 1.0, 50.0, 50.0), (0.5, 50.0, 0.5, 66.67, 57.14),
                   (0.6, 75.0, 0.5, 50.0, 33.33), (0.9, 75.0, 0.0, 100.0, 40.0), (float("inf"), 100.0, 0.0, 100.0, 0.0)]
    assert frr_at(points, 1.0).threshold == 0.3 and frr_at(points, 0.5).threshold == 0.5
    assert frr_at(points, 0.0).threshold == 0.9 and frr_at(points, 0.0).frr == 75.0
    with pytest.raises(ValueError):
        det_points([0.5], [], negative_hours=0.0)


def test_bias_word_recall_ignores_insertions():
    """A bias word said again by mistake costs B-WER (an insertion) but not recall; a substituted one costs both."""
    _, _, b = biased_word_errors("CALL ANNA", "CALL ANNA ANNA", {"ANNA"})
    assert (b.recall, b.rate) == (100.0, 100.0)  # 1 bias word said, 1 inserted
    _, _, b = biased_word_errors("CALL ANNA SMITH", "CALL ANNA SMYTHE", {"ANNA", "SMITH"})
    assert (b.recall, b.rate) == (50.0, 50.0)
    assert np.isnan(ErrorCounts().recall)  # no bias word said


def test_errors_after_the_wake_word_by_hand():
    from asr.metrics import errors_after

    ref = "HEY ZEPHYRA PLAY SOME MUSIC"
    assert errors_after(ref, "HEY ZEPHYRA PLAY SOME MUSIC", "ZEPHYRA") == (0, 3)
    assert errors_after(ref, "A ZEFIRA PLAY MUSIC NOW", "ZEPHYRA") == (2, 3)  # SOME deleted, NOW inserted
    assert errors_after(ref, "HEY SAFARI PLAY SOME MUSIC", "ZEPHYRA") == (0, 3)  # the wake word's own error is not counted
    assert errors_after("PLAY MUSIC", "PLAY MUSIC", "ZEPHYRA") == (0, 0)
