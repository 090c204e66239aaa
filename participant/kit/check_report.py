"""The preflight's report: one line per check (pass, warn, fail or skip) with its fix.

``participant/kit/preflight.py`` runs the checks; ``accord kit check`` prints the report.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from accord.errors import InternalError

__all__ = ["Check", "CheckReport", "CheckStatus"]


class CheckStatus(enum.Enum):
    """Outcome of one preflight check."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    """One line of the preflight report.

    Attributes:
        name: what was checked, e.g. ``"certificate validity"``.
        status: pass, warn, fail or skip.
        detail: what was found.
        fix: what to do about a warning or failure (empty when it passed).
    """

    name: str
    status: CheckStatus
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class CheckReport:
    """Every check ``check`` ran, in order."""

    kit_dir: Path
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings and skips are allowed)."""
        return not any(c.status is CheckStatus.FAIL for c in self.checks)

    def failures(self) -> tuple[Check, ...]:
        """The checks that failed."""
        return tuple(c for c in self.checks if c.status is CheckStatus.FAIL)

    def get(self, name: str) -> Check:
        """The check called ``name``.

        Raises:
            UsageError: no check has that name.
        """
        for item in self.checks:
            if item.name == name:
                return item
        raise InternalError(f"no check named {name!r}")
