"""A ratchet on module and function size (issue 13: ~450 lines, ~60 lines).

`BACKLOG_*` lists what is over the limit today, with its size: the backlog of issue 13's
split, not a permission (empty since the split was finished). A new module or function
over the limit fails, and so does one on the list that grew; shrink an entry (or drop
it) when its code is split.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE_LINES = 450
FUNCTION_LINES = 60

BACKLOG_MODULES: dict[str, int] = {}

BACKLOG_FUNCTIONS: dict[str, int] = {}


def sizes() -> tuple[dict[str, int], dict[str, int]]:
    modules: dict[str, int] = {}
    functions: dict[str, int] = {}
    for folder in ("accord", "crypto", "coordinator", "participant"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "_pb2" in path.name:
                continue
            name = path.relative_to(ROOT).as_posix()
            text = path.read_text(encoding="utf-8")
            modules[name] = len(text.splitlines())
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    key = f"{name}:{node.name}"
                    functions[key] = max(functions.get(key, 0), length)
    return modules, functions


def test_no_module_grows_past_the_limit_or_its_backlog_size() -> None:
    modules, _ = sizes()
    over = {
        name: lines
        for name, lines in modules.items()
        if lines > max(MODULE_LINES, BACKLOG_MODULES.get(name, 0))
    }
    assert not over, f"modules over {MODULE_LINES} lines (split them): {over}"


def test_no_function_grows_past_the_limit_or_its_backlog_size() -> None:
    _, functions = sizes()
    over = {
        name: lines
        for name, lines in functions.items()
        if lines > max(FUNCTION_LINES, BACKLOG_FUNCTIONS.get(name, 0))
    }
    assert not over, f"functions over {FUNCTION_LINES} lines (name their steps): {over}"


def test_the_backlog_shrinks_with_the_code() -> None:
    """An entry states today's size: lower it when its code shrinks, drop it when split."""
    modules, functions = sizes()
    stale = {
        name: (listed, modules.get(name, 0))
        for name, listed in BACKLOG_MODULES.items()
        if modules.get(name, 0) != listed
    } | {
        name: (listed, functions.get(name, 0))
        for name, listed in BACKLOG_FUNCTIONS.items()
        if functions.get(name, 0) != listed
    }
    assert not stale, f"backlog entries (listed, now) to lower or drop: {stale}"
