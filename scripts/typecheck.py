"""Type-check every package under the names it is imported by: `make lint` runs this.

The distribution maps folders onto one namespace (`crypto/` is `accord.crypto`, see
pyproject's `package-dir`). mypy knows no such mapping: run on the folders, it cannot
resolve `accord.crypto.*` (the editable install is an import hook) and, with
`ignore_missing_imports`, would silently take every such name as `Any`. This script
lays the namespace out as it is installed, in a folder of symbolic links
(`build/typecheck/accord/crypto -> crypto/`, ...), runs mypy there with pyproject's
settings, and prints each finding with its path in this repository.

Exit status: mypy's (0 clean, 1 findings, 2 a usage error).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import tomllib
from mypy import api

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"


def package_dir() -> dict[str, str]:
    """pyproject's setuptools `package-dir`: import name -> folder."""
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mapping: dict[str, str] = settings["tool"]["setuptools"]["package-dir"]
    return mapping


def lay_out() -> Path:
    """The installed namespace as links into this repository; returns its `accord` folder."""
    shutil.rmtree(TREE, ignore_errors=True)
    top = TREE / "accord"
    top.mkdir(parents=True)
    mapped = {name.removeprefix("accord."): folder for name, folder in package_dir().items()}
    for entry in sorted((ROOT / mapped.pop("accord")).iterdir()):
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry)
    for name, folder in mapped.items():
        (top / name.replace(".", "/")).symlink_to(ROOT / folder)
    return top


def main() -> int:
    top = lay_out()
    here = os.getcwd()
    os.chdir(TREE)
    try:
        stdout, stderr, status = api.run(
            ["--config-file", str(ROOT / "pyproject.toml"), "--explicit-package-bases", top.name]
        )
    finally:
        os.chdir(here)
    sys.stdout.write(real_paths(stdout))
    sys.stderr.write(real_paths(stderr))
    return status


def real_paths(text: str) -> str:
    """Each `accord/<mapped>/...` path of mypy's output as the repository's own path."""
    for name, folder in sorted(package_dir().items(), key=lambda item: -len(item[0])):
        if name != "accord":
            prefix = name.replace(".", "/") + "/"
            text = re.sub(rf"(?m)^{re.escape(prefix)}", folder + "/", text)
    return text


if __name__ == "__main__":
    sys.exit(main())
