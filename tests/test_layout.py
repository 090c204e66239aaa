"""The package boundaries of DESIGN.md section 4, checked on every import statement."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# folder -> (first-party packages it may import, third-party roots it must not import)
RULES = {
    "crypto": ({"accord.crypto", "accord.errors"}, {"torch", "grpc", "peft", "opacus", "sqlite3"}),
    "coordinator": (
        {"accord.coordinator", "accord.crypto", "accord.proto", "accord.errors"}
        | {
            "accord.core.configfile",
            "accord.core.transport",
            "accord.core.logs",
            "accord.core.kitformat",
        }
        | {"accord.core.ledger_store", "accord"},
        {"torch", "peft", "opacus", "transformers"},
    ),
    "proto": ({"accord.proto"}, {"torch", "numpy", "tenseal"}),
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
            found.add(node.module)
    return found


def sources(folder: str) -> list[Path]:
    return [p for p in (ROOT / folder).rglob("*.py") if "_pb2" not in p.name]


@pytest.mark.parametrize("folder", sorted(RULES))
def test_each_package_imports_only_what_the_design_allows(folder: str) -> None:
    first_party, forbidden = RULES[folder]
    for path in sources(folder):
        for name in imports(path):
            root = name.split(".")[0]
            assert root not in forbidden, f"{path.relative_to(ROOT)} imports {name}"
            if root == "accord" and name != "accord":
                assert any(name == p or name.startswith(p + ".") for p in first_party), (
                    f"{path.relative_to(ROOT)} imports {name}"
                )


def test_crypto_uses_only_numpy_tenseal_cryptography_and_the_standard_library() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for path in sources("crypto"):
        for name in imports(path):
            root = name.split(".")[0]
            assert root in stdlib | ALLOWED_ROOTS_IN_CRYPTO, f"{path.relative_to(ROOT)}: {name}"


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
