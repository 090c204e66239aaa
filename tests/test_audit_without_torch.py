"""`accord audit` on a machine without the training stack: torch, opacus, peft and
transformers cannot be imported in the subprocess that runs it (a meta-path finder
refuses them, as a fresh venv without them would)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from accord.core import accounting
from tests.test_audit import DELTA, pinned_federation

BLOCKED = ("torch", "opacus", "peft", "transformers", "torchvision")

RUN_WITHOUT_TORCH = f"""
import importlib.abc, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not installed here)")
        return None

sys.meta_path.insert(0, Refuse())
from accord.cli.main import app
sys.argv = ["accord", *sys.argv[1:]]
try:
    app()
finally:
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
    if leaked:
        print("LEAKED", leaked, file=sys.stderr)
"""


def accord_without_torch(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_TORCH, *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("audited")
    pinned = pinned_federation(root)
    return root, pinned["ca_path"]


def test_verify_runs_without_the_training_stack(federation: tuple[Path, Path]) -> None:
    root, ca = federation
    result = accord_without_torch("audit", "verify", str(root), "--ca", str(ca), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"]
    assert "LEAKED" not in result.stderr


@pytest.mark.parametrize("accountant", ["rdp", "pld", "gdp"])
def test_budget_runs_without_the_training_stack(
    federation: tuple[Path, Path], accountant: str
) -> None:
    root, ca = federation
    result = accord_without_torch(
        "audit",
        "budget",
        "--ledger",
        str(root),
        "--ca",
        str(ca),
        "--json",
        "--accountant",
        accountant,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["accountant"] == accountant
    epsilons = [p["epsilon"] for p in summary["participants"]]
    assert epsilons and all(e is not None and e > 0 for e in epsilons)
    assert "LEAKED" not in result.stderr


def test_prv_without_opacus_says_what_to_install(federation: tuple[Path, Path]) -> None:
    root, ca = federation
    result = accord_without_torch(
        "audit", "budget", "--ledger", str(root), "--ca", str(ca), "--accountant", "prv"
    )
    assert result.returncode == 2
    assert "prv needs opacus" in result.stderr + result.stdout


def test_pld_agrees_with_dp_accounting_and_never_exceeds_rdp() -> None:
    import dp_accounting

    run = (1.0, 0.05, 200)
    pld = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
    pld.compose(
        dp_accounting.PoissonSampledDpEvent(run[1], dp_accounting.GaussianDpEvent(run[0])), run[2]
    )
    ours = accounting.epsilon([run], DELTA, "pld")
    assert ours == pytest.approx(pld.get_epsilon(DELTA), rel=1e-9)
    assert ours < accounting.epsilon([run], DELTA, "rdp")
