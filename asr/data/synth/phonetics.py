"""How alike words sound: espeak-ng's IPA phonemes (stress marks dropped) and the Levenshtein distance
over phoneme symbols, computed for a whole pool of words at once (:class:`PhoneticIndex`). Used for
the wake word's confusables (``asr.data.synth.wakeword``) and hard bias-list distractors
(``asr.data.bias_lists``: Le et al. 2021's option of distractors close to the true words)."""

from __future__ import annotations

import numpy as np

from asr.data.synth.espeak import engine

_STRESS = str.maketrans("", "", "\u02c8\u02cc")  # primary and secondary stress marks


def phonemes(words: list[str]) -> list[str]:
    """espeak-ng's (en-us) IPA for each word, stress marks dropped."""
    return [p.translate(_STRESS) for p in engine().phonemes([w.lower() for w in words])]


class PhoneticIndex:
    """A pool of words and their phonemes, for distances from one word to all of them.

    Shape legend: P pool words, L longest phoneme string."""

    def __init__(self, words: list[str]) -> None:
        self.words = list(words)
        phones = phonemes(self.words)
        self._symbols: dict[str, int] = {}
        self.lengths = np.array([len(p) for p in phones], dtype=np.int64)
        self.codes = np.full((len(phones), max(self.lengths, default=0)), -1, dtype=np.int64)  # (P, L)
        for i, p in enumerate(phones):
            self.codes[i, : len(p)] = [self._symbols.setdefault(c, len(self._symbols)) for c in p]

    def distances(self, word: str) -> np.ndarray:
        """(P,) Levenshtein distances over phoneme symbols from ``word`` to every pool word: the usual
        dynamic programme, one row per symbol of ``word``, vectorised over the pool."""
        target = [self._symbols.get(c, -2) for c in phonemes([word])[0]]  # -2: a symbol no pool word has
        p, width = self.codes.shape
        row = np.broadcast_to(np.arange(width + 1), (p, width + 1)).copy()  # (P, L + 1): distance from ""
        for i, symbol in enumerate(target, 1):
            new = np.empty_like(row)
            new[:, 0] = i
            for j in range(1, width + 1):
                new[:, j] = np.minimum(np.minimum(row[:, j] + 1, new[:, j - 1] + 1),
                                       row[:, j - 1] + (self.codes[:, j - 1] != symbol))
            row = new
        return row[np.arange(p), self.lengths]

    def nearest(self, word: str, count: int, exclude=(), min_distance: int = 1) -> list[tuple[str, int]]:
        """The ``count`` pool words nearest to ``word`` in phonemes, (word, distance), nearest first, ties in
        pool order; ``word`` itself, ``exclude`` and words closer than ``min_distance`` (by default those that
        sound exactly like it) left out."""
        d = self.distances(word)
        skip = set(exclude) | {word}
        order = np.argsort(d, kind="stable")
        out = []
        for i in order:
            if d[i] >= min_distance and self.words[i] not in skip:
                out.append((self.words[i], int(d[i])))
                if len(out) == count:
                    break
        return out
