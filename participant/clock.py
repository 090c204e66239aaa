"""The daemon's clock, passed in (`ParticipantDaemon(..., clock=...)`).

The daemon reads time in three ways: a monotonic clock for its deadlines and durations,
a sleep between retries, and the wall-clock date for certificate validity. All three
come from one `Clock`, so a test moves time by hand instead of sleeping or assigning
the daemon's private attributes; `SYSTEM_CLOCK` is the real one.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


class Clock(Protocol):
    """Where the daemon reads time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (deadlines, durations)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` (between retries)."""
        ...

    def now(self) -> dt.datetime:
        """The current date and time, timezone-aware UTC (certificate validity)."""
        ...


class SystemClock:
    """The real clock: `time.monotonic`, `time.sleep`, `datetime.now(UTC)`."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)


SYSTEM_CLOCK: Clock = SystemClock()
"""The clock every daemon uses unless a test passes its own."""
