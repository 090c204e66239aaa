"""A ratchet on module and function size (issue 13: ~450 lines, ~60 lines).

`BACKLOG_*` lists what is over the limit today, with its size: the backlog of issue 13's
split, not a permission. A new module or function over the limit fails, and so does one
on the list that grew; shrink an entry (or drop it) when its code is split.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE_LINES = 450
FUNCTION_LINES = 60

BACKLOG_MODULES = {
    "accord/demo/report.py": 505,
    "coordinator/aggregation/sum_workers.py": 644,
    "coordinator/operator/provision.py": 802,
    "coordinator/roster.py": 555,
    "coordinator/store/database.py": 705,
    "participant/daemon.py": 820,
    "participant/kit/preflight.py": 535,
    "participant/kit/startup_kit.py": 718,
    "participant/privacy_ledger.py": 461,
    "participant/training/multimodal.py": 638,
    "participant/training/privacy.py": 500,
}

BACKLOG_FUNCTIONS = {
    "accord/audit/ledgers.py:load": 64,
    "accord/audit/output.py:print_budget": 81,
    "accord/audit/reports.py:_client_level": 70,
    "accord/audit/reports.py:budget_summary": 112,
    "accord/audit/trust.py:pinned_key": 63,
    "accord/demo/faults.py:plan": 78,
    "accord/demo/report.py:print_summary": 73,
    "accord/demo/report.py:summary": 88,
    "accord/federation/provision.py:provision_federation": 68,
    "coordinator/aggregation/round_sum.py:round_config": 61,
    "coordinator/operator/provision.py:approve": 98,
    "coordinator/operator/provision.py:create_ca": 82,
    "coordinator/server.py:start": 97,
    "participant/daemon.py:_download": 63,
    "participant/daemon.py:_upload": 73,
    "participant/daemon.py:_work": 84,
    "participant/exchange.py:reveal_mean": 61,
    "participant/kit/preflight.py:check": 67,
    "participant/kit/startup_kit.py:package": 144,
    "participant/kit/startup_kit.py:request": 63,
    "participant/training/local.py:train_local": 122,
    "participant/training/multimodal.py:__init__": 94,
}


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
