"""Text normalisation for transcripts, as LibriSpeech's: lowercase words of a-z and apostrophes, numbers
and symbols spelled out, punctuation dropped, hyphenated words split.

LibriSpeech's text was normalised this way from its books (Panayotov et al., ICASSP 2015, section 2.1:
"numbers, abbreviations and other non-standard words" expanded); the recipes upper-case it on output.
``normalize_text`` returns None for text it cannot say for sure how to read (fractions, URLs,
abbreviations with dots, non-Latin letters): such a sentence is left out, never guessed.
"""

from __future__ import annotations

import re
import unicodedata

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_ENDINGS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                    "nine": "ninth", "twelve": "twelfth"}

# Symbols that read as words wherever they stand.
_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "=": " equals ", "@": " at ", "#": " number "}
_PUNCTUATION = re.compile(r"[,.;:!?\"()\[\]{}]")
_DASHES = re.compile(r"(--|[-\u2010-\u2015/])")
_MONEY = re.compile(r"\$(\d+(?:,\d{3})*(?:\.\d+)?)")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")
_NUMBER = re.compile(r"\b\d{1,3}(?:,\d{3})+\b|\b\d+\b")
_WORD = re.compile(r"^[a-z]+(?:'[a-z]+)*$")
_UNSAYABLE = re.compile(r"\d\s*/\s*\d|https?:|www\.|[a-z]\.[a-z]|\.\.\.|\d{13}")


def spell_cardinal(n: int) -> str:
    """``1234`` -> ``one thousand two hundred thirty four`` (0 <= n < 10**12)."""
    if not 0 <= n < 10**12:
        raise ValueError(f"{n} is out of range")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + spell_cardinal(n % 100))
    for scale, name in _SCALES:
        if n >= scale:
            rest = n % scale
            return spell_cardinal(n // scale) + " " + name + ("" if rest == 0 else " " + spell_cardinal(rest))
    raise AssertionError("unreachable")


def spell_ordinal(n: int) -> str:
    """``21`` -> ``twenty first``."""
    words = spell_cardinal(n).split()
    last = words[-1]
    if last in _ORDINAL_ENDINGS:
        words[-1] = _ORDINAL_ENDINGS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def spell_year_or_number(digits: str) -> str:
    """A bare number as a reader says it: four-digit numbers 1100-1999 and 2010-2099 as years
    (``1990`` -> ``nineteen ninety``, ``1905`` -> ``nineteen o five``), everything else as a cardinal."""
    n = int(digits)
    if len(digits) == 4 and (1100 <= n <= 1999 or 2010 <= n <= 2099) and n % 1000 >= 10:
        high, low = divmod(n, 100)
        if low == 0:
            return spell_cardinal(high) + " hundred"
        return spell_cardinal(high) + " " + (spell_cardinal(low) if low >= 10 else "o " + _ONES[low])
    return spell_cardinal(n)


def normalize_text(text: str) -> str | None:
    """``"He paid $5 for 2 apples & 1 pear."`` -> ``"he paid five dollars for two apples and one pear"``.

    Returns None when a part of the text has no single reading (see the module docstring)."""
    text = text.replace("\u2019", "'").replace("`", "'")
    # Accents go (cafe, not caf\u00e9); any other letter outside ASCII makes the text unsayable here.
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if unicodedata.category(c) != "Mn").lower()
    if not text.isascii() or _UNSAYABLE.search(text):
        return None
    text = _MONEY.sub(lambda m: f" {m.group(1)} dollars ", text)
    text = _ORDINAL.sub(lambda m: " " + spell_ordinal(int(m.group(1))) + " ", text)
    text = _DECIMAL.sub(lambda m: f" {spell_cardinal(int(m.group(1)))} point "
                        + " ".join(_ONES[int(d)] for d in m.group(2)) + " ", text)
    text = _NUMBER.sub(lambda m: " " + spell_year_or_number(m.group(0).replace(",", "")) + " ", text)
    for symbol, words in _SYMBOLS.items():
        text = text.replace(symbol, words)
    text = _DASHES.sub(" ", _PUNCTUATION.sub(" ", text))
    words = []
    for token in text.split():
        token = token.strip("'")  # quotation marks, not apostrophes
        if not token:
            continue
        if not _WORD.match(token):
            return None
        words.append(token)
    return " ".join(words) or None
