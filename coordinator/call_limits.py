"""Per-identity caps on the calls one certificate holds open at a time.

A member's daemon holds at most one upload stream and one `NextTask` long-poll at a
time, and a few short calls (heartbeat, download, ceremony, status). A certificate of
the federation's CA that opens more, to tie up the coordinator's worker threads, is
refused with RESOURCE_EXHAUSTED (`TooManyCalls`) when the call opens, before any of
its messages is read or spooled. With every identity capped, the worker pool is sized
so that all members at their caps still leave threads free (`worker_threads`).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping

from accord.errors import TooManyCalls

__all__ = ["CALL_CAPS", "OTHER_CALLS_CAP", "CallLimits", "worker_threads"]

CALL_CAPS: Mapping[str, int] = {"UploadUpdate": 1, "NextTask": 1}
"""Open calls of these methods one identity may hold at once."""

OTHER_CALLS_CAP = 4
"""Open calls of every other method together that one identity may hold at once."""

SPARE_THREADS = 8
"""Worker threads beyond the members' caps (health checks, reflection, newcomers)."""


def worker_threads(members: int) -> int:
    """Worker threads that serve `members` identities all at their caps, with spares."""
    return members * (sum(CALL_CAPS.values()) + OTHER_CALLS_CAP) + SPARE_THREADS


class CallLimits:
    """Counts the open calls of each identity, by kind; thread-safe."""

    def __init__(
        self, caps: Mapping[str, int] = CALL_CAPS, other_cap: int = OTHER_CALLS_CAP
    ) -> None:
        self._caps = dict(caps)
        self._other_cap = other_cap
        self._open: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def _kind(self, method: str) -> tuple[str, int]:
        if method in self._caps:
            return method, self._caps[method]
        return "other", self._other_cap

    def acquire(self, identity: str, method: str) -> None:
        """Count one more open `method` call of `identity`.

        Raises:
            TooManyCalls: `identity` already holds its cap of such calls; nothing counted.
        """
        kind, cap = self._kind(method)
        with self._lock:
            if self._open[identity, kind] >= cap:
                what = f"{method} call" if kind != "other" else "short call"
                raise TooManyCalls(
                    f"{identity} already holds {cap} open {what}{'s' if cap > 1 else ''}; "
                    "wait for it to finish"
                )
            self._open[identity, kind] += 1

    def release(self, identity: str, method: str) -> None:
        """Count one `method` call of `identity` as finished."""
        kind, _ = self._kind(method)
        with self._lock:
            self._open[identity, kind] -= 1
            if self._open[identity, kind] <= 0:
                del self._open[identity, kind]

    def open_calls(self, identity: str) -> int:
        """How many calls `identity` holds open now, of every kind."""
        with self._lock:
            return sum(n for (who, _), n in self._open.items() if who == identity)
