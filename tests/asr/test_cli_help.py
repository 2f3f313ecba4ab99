"""``asr --help`` and every verb's ``--help``: exit 0, a usage line and a runnable example.

The verbs are discovered from the parser, so a new verb is covered (and must bring an example)
without editing this file. ``--help`` imports nothing heavy, so real subprocesses are cheap here.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from asr.cli import _parser

REPO = Path(__file__).resolve().parents[2]


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path: (), ("prepare",), ("prepare", "synth"), ..., depth first."""
    found = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, prefix + (name,))
    return found


COMMANDS = _commands(_parser())


def test_discovery_finds_the_known_verbs():
    names = {" ".join(c) for c in COMMANDS}
    for expected in ["", "prepare", "prepare synth", "prepare librispeech", "features", "bpe", "train", "decode",
                     "transcribe", "average", "models", "emulate", "export"]:
        assert expected in names, f"'asr {expected}' not found by discovery: {sorted(names)}"


def _help(command: tuple[str, ...]) -> str:
    p = subprocess.run([sys.executable, "-m", "asr.cli", *command, "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"asr {' '.join(command)} --help: exit {p.returncode}\n{p.stderr}"
    assert p.stderr == "", p.stderr
    return p.stdout


def _examples(text: str) -> list[str]:
    """The indented lines under each ``example:`` / ``examples:`` / ``example (...):`` heading."""
    out, inside = [], False
    for line in text.splitlines():
        if re.match(r"^examples?\b.*:$", line):
            inside = True
        elif inside and line.startswith("  "):
            out.append(line.strip())
        else:
            inside = False
    return out


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "asr " + " ".join(c) if c else "asr")
def test_help(command):
    text = _help(command)
    assert text.startswith("usage: asr"), text[:200]
    examples = _examples(text)
    assert examples, f"no example line in 'asr {' '.join(command)} --help':\n{text}"
    if not command:
        assert "make demo" in examples
        return
    mine = [e for e in examples if e.startswith("asr " + " ".join(command))]
    assert mine, f"no example of 'asr {' '.join(command)}' in its help: {examples}"
    # Each example must parse with today's options, so the help cannot drift from the code.
    for example in mine:
        argv = shlex.split(example)[1:]
        try:
            _parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"the example in 'asr {' '.join(command)} --help' does not parse: {example}")


def test_train_help_examples_load():
    """The config file and ``--set`` keys of every ``asr train --help`` example load strictly."""
    from asr.config import load_config

    for example in _examples(_help(("train",))):
        args = _parser().parse_args(shlex.split(example)[1:])
        load_config(str(REPO / args.config), args.set)


def test_the_compression_methods_in_the_help_are_the_registry_s():
    from asr.cli import COMPRESSION_METHODS
    from asr.compression import METHODS

    assert set(re.split(r", | or ", COMPRESSION_METHODS)) == set(METHODS)


def test_the_int8_flavours_in_the_help_are_the_exporter_s():
    from asr.cli import INT8_FLAVOURS
    from export.int8 import FLAVOURS

    assert INT8_FLAVOURS == list(FLAVOURS)


def test_every_verb_that_builds_a_model_finds_the_aat_handler(tmp_path):
    """AAT's handler lives in export and registers itself on import; ``asr train`` on a config with an
    aat section (and every verb in COMPRESSED_MODEL_VERBS) must find it without the caller importing it.
    A fresh process, so that no other test has imported it already."""
    script = f"""
import asr.cli
from asr.compression import handler
from asr.compression.aat import AATConfig
rc = asr.cli.main(["train", "--config", {str(tmp_path / "missing.yaml")!r}])
assert rc != 0  # the config is missing: the verb stops, after the registration
print(type(handler(AATConfig(method="aat"))).__name__)
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "AAT"
