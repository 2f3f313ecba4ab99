"""Word error rate with kaldialign (Levenshtein alignment, as icefall's ``errs-*`` files)."""

from __future__ import annotations


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, number of reference words)."""
    import kaldialign

    r, h = ref.split(), hyp.split()
    return kaldialign.edit_distance(r, h)["total"], len(r)


def alignment(ref: str, hyp: str) -> str:
    """``REF->HYP`` pairs for the errors file: correct words plain, errors as ``(ref->hyp)``."""
    import kaldialign

    out = []
    for r, h in kaldialign.align(ref.split(), hyp.split(), "*"):
        out.append(r if r == h else f"({r}->{h})")
    return " ".join(out)
