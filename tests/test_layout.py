"""The package graph of DESIGN.md section 4, stated whole and checked on every import.

Each folder is a unit; `ALLOWED` lists every edge a unit may have to another. A new
folder, a new edge, an upward import (a role importing the top floor), a sideways one
(a role importing the other role) or a cycle fails here.

    top floor      accord.cli -> accord.demo -> accord.federation    accord.audit
                        |            |               |                    |
    roles          accord.coordinator        accord.participant  (never each other)
                        |                           |
    wire                +------ accord.wire --------+   (converters; -> crypto, proto)
                        |                           |
    ground floor   accord.core                 accord.proto
                        |
    protocol       accord.crypto   (pure: no I/O, no grpc, no torch)
                        |
                   accord.errors   (standard library only)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Folder (relative to the repository) -> the unit its modules belong to.
FOLDERS = {
    "accord": "accord",
    "accord/core": "accord.core",
    "accord/cli": "accord.cli",
    "accord/audit": "accord.audit",
    "accord/demo": "accord.demo",
    "accord/federation": "accord.federation",
    "accord/wire": "accord.wire",
    "proto": "accord.proto",
    "proto/v1": "accord.proto",
    "crypto": "accord.crypto",
    "coordinator": "accord.coordinator",
    "coordinator/store": "accord.coordinator",
    "coordinator/aggregation": "accord.coordinator",
    "coordinator/operator": "accord.coordinator",
    "participant": "accord.participant",
    "participant/data": "accord.participant",
    "participant/training": "accord.participant",
    "participant/kit": "accord.participant",
}

GROUND = {"accord.errors"}
WIRE = GROUND | {"accord.crypto", "accord.proto"}
ROLE_BASE = GROUND | {"accord.core", "accord.crypto", "accord.proto", "accord.wire"}
ROLES = {"accord.coordinator", "accord.participant"}

# Unit -> the units it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "accord.errors": set(),
    "accord.crypto": GROUND,
    "accord.proto": set(),
    "accord.core": GROUND,
    "accord.wire": WIRE,  # both roles' converters: protocol values <-> accord.v1
    "accord.coordinator": ROLE_BASE,
    "accord.participant": ROLE_BASE,
    "accord.federation": ROLE_BASE | ROLES,
    "accord.audit": GROUND | {"accord.core", "accord.crypto"} | ROLES,
    # The demo's closing line shows the epsilon the audit computes from its ledgers.
    "accord.demo": ROLE_BASE | ROLES | {"accord.federation", "accord.audit"},
    "accord.cli": ROLE_BASE | ROLES | {"accord.federation", "accord.audit", "accord.demo"},
    "accord": {"accord.cli"},  # __main__: `python -m accord` is the `accord` command
}

# Third-party roots a unit must not import (torch stays out of everything but training).
FORBIDDEN = {
    "accord.crypto": {"torch", "grpc", "peft", "opacus", "sqlite3", "psycopg"},
    "accord.proto": {"torch", "numpy", "tenseal"},
    "accord.core": {"torch", "peft", "transformers", "tenseal"},  # opacus lazily, for PRV
    "accord.coordinator": {"torch", "peft", "opacus", "transformers"},
    "accord.audit": {"torch", "peft", "transformers"},  # opacus only lazily, for PRV
    "accord.wire": {"torch", "grpc", "peft", "opacus", "transformers", "sqlite3", "psycopg"},
}
ALLOWED_ROOTS_IN_CRYPTO = {"numpy", "tenseal", "cryptography", "accord"}


def imports(path: Path) -> set[str]:
    """Every module an import statement in `path` names (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def unit_of_module(name: str) -> str | None:
    """The unit a dotted first-party name belongs to (None: not ours)."""
    if name == "accord.errors" or name.startswith("accord.errors."):
        return "accord.errors"
    if name == "accord.__version__":
        return None  # the version: any unit may print it
    for unit in sorted(set(FOLDERS.values()), key=len, reverse=True):
        if unit != "accord" and (name == unit or name.startswith(unit + ".")):
            return unit
    return None if not name.startswith("accord.") else "accord"


def unit_of_path(path: Path) -> str:
    relative = path.relative_to(ROOT)
    if relative.as_posix() == "accord/errors.py":
        return "accord.errors"
    return FOLDERS[relative.parent.as_posix()]


def sources() -> list[Path]:
    return [
        path
        for folder in FOLDERS
        for path in sorted((ROOT / folder).glob("*.py"))
        if "_pb2" not in path.name
    ]


def edges() -> dict[tuple[str, str], list[str]]:
    """(from unit, to unit) -> the files and names that make the edge."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in sources():
        source = unit_of_path(path)
        for name in imports(path):
            target = unit_of_module(name)
            if target is None or target == source:
                continue
            found.setdefault((source, target), []).append(f"{path.relative_to(ROOT)}: {name}")
    return found


def test_every_package_folder_is_a_declared_unit() -> None:
    for package in ("accord", "proto", "crypto", "coordinator", "participant"):
        for init in (ROOT / package).rglob("__init__.py"):
            folder = init.parent.relative_to(ROOT).as_posix()
            assert folder in FOLDERS, f"{folder}: add it to FOLDERS and ALLOWED"
    assert set(FOLDERS.values()) | GROUND == set(ALLOWED)


def test_every_import_is_an_allowed_edge() -> None:
    wrong = [
        where
        for (source, target), places in edges().items()
        if target not in ALLOWED[source]
        for where in places
    ]
    assert not wrong, "imports the design does not allow:\n" + "\n".join(wrong)


def test_the_unit_graph_has_no_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for source, target in edges():
        graph.setdefault(source, set()).add(target)
    state: dict[str, int] = {}

    def visit(unit: str, trail: list[str]) -> None:
        state[unit] = 1
        for nxt in graph.get(unit, ()):
            if state.get(nxt) == 1:
                pytest.fail("cycle: " + " -> ".join([*trail, unit, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, unit])
        state[unit] = 2

    for unit in graph:
        if unit not in state:
            visit(unit, [])


def beyond_the_ground_floor(path: Path) -> set[str]:
    """The units of ours, besides its own and `accord.errors`, that a module imports."""
    units = {unit_of_module(name) for name in imports(path)}
    return {unit for unit in units if unit is not None} - {"accord.core", "accord.errors"}


def test_the_ground_floor_imports_nothing_of_ours_but_errors(tmp_path) -> None:
    """DESIGN.md section 4: the ledger's chain and checks are crypto's, and
    `accord/core/ledger_store.py` keeps only the file; no module is excepted."""
    assert ALLOWED["accord.core"] == GROUND == {"accord.errors"}
    for path in sorted((ROOT / "accord" / "core").glob("*.py")):
        assert not beyond_the_ground_floor(path), path.relative_to(ROOT)
    planted = tmp_path / "ledger_store.py"
    planted.write_text("from accord.crypto import ledger_chain as chain\n", encoding="utf-8")
    assert beyond_the_ground_floor(planted) == {"accord.crypto"}


def test_nothing_below_imports_the_top_floor_and_roles_never_import_each_other() -> None:
    top = {"accord.cli", "accord.audit", "accord.demo", "accord.federation"}
    below = ("accord.errors", "accord.crypto", "accord.proto", "accord.core", "accord.wire")
    for unit in (*below, *ROLES):
        assert not (ALLOWED[unit] & top), unit
    assert "accord.participant" not in ALLOWED["accord.coordinator"]
    assert "accord.coordinator" not in ALLOWED["accord.participant"]


@pytest.mark.parametrize("unit", sorted(FORBIDDEN))
def test_units_keep_out_the_libraries_the_design_forbids(unit: str) -> None:
    for path in sources():
        if unit_of_path(path) != unit:
            continue
        for name in imports(path):
            assert name.split(".")[0] not in FORBIDDEN[unit], f"{path.relative_to(ROOT)}: {name}"


def test_crypto_uses_only_numpy_tenseal_cryptography_and_the_standard_library() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for path in (ROOT / "crypto").glob("*.py"):
        for name in imports(path):
            root = name.split(".")[0]
            assert root in stdlib | ALLOWED_ROOTS_IN_CRYPTO, f"{path.relative_to(ROOT)}: {name}"


def test_errors_uses_only_the_standard_library() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for name in imports(ROOT / "accord" / "errors.py"):
        assert name.split(".")[0] in stdlib, name


def test_the_root_package_holds_only_the_version() -> None:
    tree = ast.parse((ROOT / "accord" / "__init__.py").read_text(encoding="utf-8"))
    names = [
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    ]
    assert names == ["__version__"]
    assert not any(isinstance(node, ast.Import | ast.ImportFrom) for node in tree.body)
