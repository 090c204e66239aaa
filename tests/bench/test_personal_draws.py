"""bench/personal_draws.py: its table counts what it says, and its plan is the demo's."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tests.bench.test_fl_sim import fl_sim


def load_personal_draws() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "personal_draws.py"
    spec = importlib.util.spec_from_file_location("personal_draws", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fl_sim", fl_sim)
    spec.loader.exec_module(module)
    return module


personal_draws = load_personal_draws()


def test_the_table_counts_draws_at_or_above_local_only() -> None:
    # Two draws, two enterprises: (local-only, personal) own-test accuracy.
    results = [[(0.90, 0.92), (0.80, 0.80)], [(0.94, 0.93), (0.81, 0.83)]]
    rows = personal_draws.table(7, ["a", "b"], results)
    assert rows[0] == "| 7 | a | 92.0 | 92.5 | +0.5 | 2.1 | 1 of 2 |"
    assert rows[1] == "| 7 | b | 80.5 | 81.5 | +1.0 | 1.4 | 2 of 2 |"  # a tie counts
    assert rows[2] == "| 7 | every enterprise | | | | | 1 of 2 |"


def test_the_plan_is_the_demo_profile() -> None:
    plan, hyper = personal_draws.PLAN, personal_draws.DEMO
    assert (hyper.learning_rate, hyper.steps, hyper.clip) == (0.05, 10, 1.0)
    assert (plan.rounds, plan.dp_batch_size, plan.accountant) == (5, 128, "rdp")
    settings = fl_sim.settings(hyper, plan, personal_draws.EPSILON, 400)
    assert settings.dp is not None and settings.dp.accountant == "rdp"
    assert settings.dp.planned_steps == 50 and settings.batch_size == 128
