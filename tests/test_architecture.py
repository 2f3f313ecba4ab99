"""The layout's rules, checked: the import-linter contracts of ``pyproject.toml`` (one-way layers, no
import cycles), no import inside a function except a commented optional heavy dependency, and tests
that mirror the packages they test."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("asr", "export", "nna_emulator")


def test_import_contracts_hold():
    """``lint-imports`` with the contracts of pyproject.toml: nna_emulator <- asr <- export <- asr.cli
    and asr.bench, the layers inside each package, and no cycle between the modules of any package."""
    p = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "0 broken" in p.stdout, p.stdout[-2000:]


def _nested_imports(path: Path):
    """(line number, module, source line) of every import that is not at module level."""
    tree = ast.parse(path.read_text(), str(path))
    lines = path.read_text().splitlines()
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            yield node.lineno, module or "", lines[node.lineno - 1]


def test_no_import_inside_a_function_but_commented_optional_heavy_ones():
    """A lazy import hides a dependency (and once hid import cycles): allowed only for a heavy
    third-party module that one optional path needs, with a ``# lazy:`` comment on it or in the comment
    lines right above it saying so; a module of this repository only in the composition root,
    ``asr/cli.py``, where each verb loads its own stack (nothing imports the CLI, so it cannot hide a
    cycle, and lint-imports sees these imports too)."""
    bad = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            lines = path.read_text().splitlines()
            for lineno, module, line in _nested_imports(path):
                ours = module.split(".")[0] in PACKAGES and path != REPO / "asr" / "cli.py"
                above, k = [], lineno - 2  # the comment lines above it, over a block of imports
                while k >= 0 and lines[k].strip().startswith(("#", "import ", "from ")):
                    above.append(lines[k])
                    k -= 1
                commented = any("# lazy:" in text for text in [line, *above])
                if ours or not commented:
                    bad.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()}")
    assert not bad, "imports inside functions:\n" + "\n".join(bad)


def test_tests_mirror_the_packages():
    """tests/asr/..., tests/export/..., tests/nna_emulator/... follow the packages; tests/recipes the
    recipes; only whole-repository checks (this file) sit at the top."""
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        rel = path.relative_to(REPO / "tests")
        if len(rel.parts) == 1:
            assert rel.name == "test_architecture.py", f"tests/{rel}: put it under the package it tests"
            continue
        assert rel.parts[0] in (*PACKAGES, "recipes"), f"tests/{rel}: not under a package folder"
        folder = REPO.joinpath(*rel.parts[:-1])
        assert folder.is_dir(), f"tests/{rel}: {folder.relative_to(REPO)} is not a folder of the repository"


def test_the_cli_and_sherpa_processes_load_only_what_they_need():
    """``asr --help`` loads no torch; a process that runs only sherpa-onnx (the benchmarks measure its
    memory) loads no torch either."""
    code = ("import sys, asr.cli, asr.bench.sherpa_engine, asr.bench.sherpa_client; "
            "print(sorted(m for m in ('torch', 'torchaudio', 'lhotse', 'onnx') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]", p.stdout
