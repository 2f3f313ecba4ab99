"""``asr.errors.first_line``: what a one-line error quotes of a library's exception."""

from __future__ import annotations

from asr.errors import first_line


def test_first_line_skips_blank_lines_and_names_the_type_of_an_empty_message():
    assert first_line(RuntimeError("first\nsecond")) == "first"
    assert first_line(RuntimeError("\n  \nINTERNAL: unk is not defined.\nmore")) == "INTERNAL: unk is not defined."
    assert first_line(ValueError("")) == "ValueError"
    assert first_line(KeyError()) == "KeyError"
