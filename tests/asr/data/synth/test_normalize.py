"""Tests for asr.data.synth.normalize: numbers and symbols spelled out, the way LibriSpeech reads."""

from __future__ import annotations

import pytest

from asr.data.synth.normalize import normalize_text, spell_cardinal, spell_ordinal, spell_year_or_number


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (20, "twenty"), (42, "forty two"), (100, "one hundred"),
    (115, "one hundred fifteen"), (1000, "one thousand"), (2024, "two thousand twenty four"),
    (1_000_001, "one million one"), (3_200_000_000, "three billion two hundred million"),
])
def test_cardinals(n, words):
    assert spell_cardinal(n) == words


def test_ordinals_and_years():
    assert [spell_ordinal(n) for n in (1, 2, 3, 5, 8, 9, 12, 20, 21, 40, 100)] == [
        "first", "second", "third", "fifth", "eighth", "ninth", "twelfth", "twentieth", "twenty first",
        "fortieth", "one hundredth"]
    assert spell_year_or_number("1990") == "nineteen ninety"
    assert spell_year_or_number("1905") == "nineteen o five"
    assert spell_year_or_number("1800") == "eighteen hundred"
    assert spell_year_or_number("2000") == "two thousand"
    assert spell_year_or_number("2024") == "twenty twenty four"
    assert spell_year_or_number("3000") == "three thousand"
    with pytest.raises(ValueError):
        spell_cardinal(10**12)


@pytest.mark.parametrize("raw, normalised", [
    ("He paid $5 for 2 apples & 1 pear.", "he paid five dollars for two apples and one pear"),
    ("the 21st of 3 rounds", "the twenty first of three rounds"),
    ("it weighs 2.5 tons, or 1,000,000 grams", "it weighs two point five tons or one million grams"),
    ("three-ply cord -- a 50% share", "three ply cord a fifty percent share"),
    ("That'll fix him good!", "that'll fix him good"),
    ("'quoted' Bertie Wooster's man", "quoted bertie wooster's man"),
    ("caf\u00e9 au lait", "cafe au lait"),
])
def test_sentences(raw, normalised):
    assert normalize_text(raw) == normalised


@pytest.mark.parametrize("raw", ["1/2 cup", "e.g. this", "see www.example.com", "wait...what", "the 1800s",
                                 "a \u4e2d word", "", "!!!"])
def test_what_has_no_single_reading_is_refused(raw):
    assert normalize_text(raw) is None
