"""Write one `## ` section of docs/benchmarks.md, leaving every other section as it was.

Each benchmark script owns one section (its heading) and replaces it in place, or
appends it when the file has none yet (`publish` prints it too); `cpu_model` names the
machine's CPU for the section's machine line.
"""

from __future__ import annotations

import re
from pathlib import Path


def replace_section(path: Path, heading: str, section: str) -> None:
    """Write `section` (which starts with `heading`) into the markdown file at `path`."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## (?!#)|\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip("\n") + "\n\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def publish(section: str, path: Path | None, heading: str) -> None:
    """Print `section`, then write it into the markdown file at `path` (if one is given)."""
    print(section)
    if path is not None:
        replace_section(path, heading, section)


def cpu_model(unknown: str = "unknown") -> str:
    """The CPU's model name from /proc/cpuinfo (`unknown` where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return unknown
