"""The docs point at code and tests that exist.

docs/security.md names the test behind every guarantee, docs/ml.md and the README name the
modules that hold each part. A move or a rename that leaves a doc pointing at nothing
fails here, not in a reader's hands.
"""

from __future__ import annotations

import ast
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
TEST_REFERENCE = re.compile(r"\b(tests/[\w/]+\.py)(?:::(\w+))?")
MODULE_NAME = re.compile(r"\b(\w+\.py)\b")


@cache
def tracked_names() -> frozenset[str]:
    listing = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return frozenset(Path(line).name for line in listing.splitlines())


def defined_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_test_a_doc_names_exists(doc: Path) -> None:
    missing = []
    for match in TEST_REFERENCE.finditer(doc.read_text(encoding="utf-8")):
        path, name = ROOT / match.group(1), match.group(2)
        if not path.is_file() or (name is not None and name not in defined_names(path)):
            missing.append(match.group(0))
    assert not missing, f"{doc.name} names tests that do not exist: {sorted(set(missing))}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_module_a_doc_names_exists(doc: Path) -> None:
    names = set(MODULE_NAME.findall(doc.read_text(encoding="utf-8")))
    missing = sorted(name for name in names if name not in tracked_names())
    assert not missing, f"{doc.name} names modules that no longer exist: {missing}"
