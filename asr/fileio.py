"""Atomic file writes: the one place that implements "write to a temp file, then rename".

Every output a user may find after a crash (checkpoints, manifests, tokens, decode results) goes
through :func:`atomic_write`, so a file is either complete or absent. A temp file of a process that
was killed (``kill -9``, power loss) cannot be removed by it: the next write of the same file removes
it (:func:`remove_stale_temps`).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from asr.errors import UserError, first_line


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds, remove
    it when it fails. The temp name keeps ``path``'s suffixes (writers such as lhotse pick the format
    from them)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, f".{path.name}.tmp-")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{''.join(path.suffixes)}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def find_recorded_path(holder: str | Path, recorded: str) -> Path | None:
    """A path that the file ``holder`` records (a manifest's feature archive, a checkpoint's tokenizer) ->
    a file that exists, else None. Relative: beside the holder (the rule), then from the current folder
    (paths recorded from the folder a command ran in); absolute: as written. Either, failing that: by
    name beside the holder (a folder moved, or used from elsewhere)."""
    p, folder = Path(recorded), Path(holder).parent
    candidates = [p, folder / p.name] if p.is_absolute() else [folder / p, p, folder / p.name]
    return next((c for c in candidates if c.is_file()), None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temps(folder: Path, prefix: str) -> None:
    """Remove the files and folders in ``folder`` named ``<prefix><pid>...`` whose process is gone (this
    program's temp names end in the writer's pid)."""
    if not folder.is_dir():
        return
    for stale in folder.glob(f"{glob.escape(prefix)}*"):
        pid = re.match(r"\d+", stale.name[len(prefix) :])
        if pid is None or int(pid.group()) == os.getpid() or _alive(int(pid.group())):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_user_text(path: str | Path, what: str, hint: str, encoding: str = "utf-8") -> str:
    """The text of a file a user wrote (a bias list, a keywords file, LM text), or a one-line UserError
    naming it when it is missing, a folder, unreadable or not UTF-8. ``what`` names the kind of file
    ("keywords file"); ``hint`` says how to write one."""
    path = Path(path)
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}; {hint}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder; pass a {what} ({hint})") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}); save the {what} as UTF-8") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read the {what} ({e.strerror})") from None


def read_json_object(path: str | Path) -> dict:
    """The JSON object in ``path`` ({} if there is no such file); a UserError if it holds anything else.
    Commands that end by merging their numbers into a results file call it first, before their work."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{p}: a folder, but the results are written to a JSON file; pass a file name")
    if not p.exists():
        return {}
    if not p.is_file():
        raise UserError(f"{p}: not a regular file (a device or a pipe), but the results are written to a JSON file; "
                        "pass a file name")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{p}: not valid JSON ({first_line(e)}); pass a new file name or a results file written by asr") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}: holds a JSON {type(data).__name__}, not an object of named results; pass a new file "
                        "name or a results file written by asr")
    return data


def update_json(path: str | Path, values: dict) -> dict:
    """Merge ``values`` into the JSON object at ``path`` (created if absent), atomically; returns it.
    The results files of the recipes (``exp/<run>/results.json``) are built this way, one command's
    numbers at a time."""
    p = Path(path)
    data = read_json_object(p)
    data.update(values)
    write_text_atomic(p, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return data
