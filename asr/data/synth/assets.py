"""The text material of the synthetic corpus: command templates and entity lists from ``data/synth/``."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from asr.errors import UserError

# Template domain -> chapter id.
DOMAIN_CHAPTERS = {
    "music": 1,
    "calls": 2,
    "messages": 3,
    "weather": 4,
    "timers": 5,
    "alarms": 6,
    "home": 7,
    "navigation": 8,
    "shopping": 9,
    "calendar": 10,
    "info": 11,
    "apps": 12,
}

# Template slot -> entity list file under data/synth/.
SLOT_FILES = {
    "contact": "contacts.txt",
    "song": "songs.txt",
    "artist": "artists.txt",
    "city": "cities.txt",
    "device": "devices.txt",
    "number": "numbers.txt",
    "time": "times.txt",
    "duration": "durations.txt",
    "day": "days.txt",
    "app": "apps.txt",
    "genre": "genres.txt",
    "item": "items.txt",
}

DEFAULT_ASSETS_DIR = Path(__file__).resolve().parents[3] / "data" / "synth"

_ENTRY_RE = re.compile(r"^[a-z' ]+$")
_TEMPLATE_RE = re.compile(r"^([a-z]+): ([a-z' {}]+)$")
SLOT_RE = re.compile(r"\{([a-z]+)\}")


@dataclass(frozen=True)
class Template:
    """One command pattern: ``text`` with ``{slot}`` placeholders, in domain ``domain``."""

    domain: str
    text: str


@dataclass(frozen=True)
class Assets:
    """The text material: templates and one entity list per slot."""

    templates: tuple[Template, ...]
    entities: dict[str, tuple[str, ...]]


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines of ``path`` with their 1-based numbers, whitespace collapsed."""
    if not path.is_file():
        raise UserError(f"{path}: synth asset file is missing")
    lines = []
    for number, raw in enumerate(path.read_text(encoding="ascii", errors="replace").splitlines(), 1):
        line = " ".join(raw.split())
        if line:
            lines.append((number, line))
    return lines


def load_assets(assets_dir: str | os.PathLike = DEFAULT_ASSETS_DIR) -> Assets:
    """Read and validate ``templates.txt`` and the entity lists named in ``SLOT_FILES``.

    Entries must be lowercase ASCII letters, apostrophes and spaces (numbers written as words), because
    they become transcripts verbatim.
    """
    assets_dir = Path(assets_dir)
    entities = {}
    for slot, file_name in SLOT_FILES.items():
        path = assets_dir / file_name
        values = []
        for number, line in _read_lines(path):
            if not _ENTRY_RE.match(line):
                raise UserError(
                    f"{path}:{number}: {line!r} has characters other than a-z, apostrophe and space; "
                    "write numbers as words"
                )
            values.append(line)
        if not values:
            raise UserError(f"{path}: no entries")
        # Deduplicate but keep file order: the order is part of what a seed reproduces.
        entities[slot] = tuple(dict.fromkeys(values))

    path = assets_dir / "templates.txt"
    templates = []
    for number, line in _read_lines(path):
        match = _TEMPLATE_RE.match(line)
        if not match or match.group(1) not in DOMAIN_CHAPTERS:
            raise UserError(
                f"{path}:{number}: expected '<domain>: <words and {{slots}}>' with a domain in "
                f"{sorted(DOMAIN_CHAPTERS)}, got {line!r}"
            )
        domain, text = match.groups()
        unknown = set(SLOT_RE.findall(text)) - set(SLOT_FILES)
        if unknown or not _ENTRY_RE.match(SLOT_RE.sub("x", text)):
            raise UserError(f"{path}:{number}: unknown slot(s) {sorted(unknown)} or bad braces in {line!r}")
        if len(text.split()) < 2:
            raise UserError(f"{path}:{number}: a template needs at least two words, got {text!r}")
        templates.append(Template(domain, text))
    if not templates:
        raise UserError(f"{path}: no templates")
    return Assets(tuple(templates), entities)
