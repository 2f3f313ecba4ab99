"""Atomic file writes: the one place that implements "write to a temp file, then rename".

Every output a user may find after a crash (checkpoints, manifests, tokens, decode results) goes
through :func:`atomic_write`, so a file is either complete or absent, and no temp file is left.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds, remove
    it when it fails. The temp name keeps ``path``'s suffixes (writers such as lhotse pick the format
    from them)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{''.join(path.suffixes)}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def update_json(path: str | Path, values: dict) -> dict:
    """Merge ``values`` into the JSON object at ``path`` (created if absent), atomically; returns it.
    The results files of the recipes (``exp/<run>/results.json``) are built this way, one command's
    numbers at a time."""
    p = Path(path)
    data = json.loads(p.read_text()) if p.is_file() else {}
    data.update(values)
    write_text_atomic(p, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return data
