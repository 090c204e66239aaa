"""Per-participant request rate limits: one token bucket per participant id.

A participant's daemon makes a few requests a second (a long-polled `NextTask`, a
heartbeat, one message per round stage), so a sender far above that is broken or
hostile, and must not starve the gRPC workers the others need. Each participant id has
a bucket of `burst` tokens that refills at `rate_per_s`; every request takes one token,
and a request that finds the bucket empty is refused with `RateLimited`
(RESOURCE_EXHAUSTED) before anything else looks at it, so it changes no state.

`CoordinatorService._header` applies the limit, after the caller's certificate was
checked against the participant id it claims: an id is limited only on behalf of the
one certificate that may speak for it, so nobody can exhaust another's budget.
The clock is an argument, so tests drive time by hand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from accord.errors import RateLimited, UsageError

MAX_TRACKED = 4096
"""Buckets kept before full ones are forgotten (a full bucket is the same as a new one)."""


@dataclass
class TokenBucket:
    """`burst` tokens at most, refilled continuously at `rate_per_s`; not thread-safe.

    Args:
        rate_per_s: tokens added per second (the sustained request rate).
        burst: the bucket's size (requests allowed at once after a quiet spell).
        tokens: tokens now; a new bucket starts full.
        updated_s: when `tokens` was last brought up to date (the clock's seconds).
    """

    rate_per_s: float
    burst: float
    tokens: float
    updated_s: float

    @classmethod
    def full(cls, rate_per_s: float, burst: float, *, now_s: float) -> TokenBucket:
        """A bucket holding `burst` tokens at `now_s`.

        Raises:
            UsageError: `rate_per_s` or `burst` is not positive.
        """
        if rate_per_s <= 0 or burst < 1:
            raise UsageError(
                f"token bucket: rate_per_s = {rate_per_s}, burst = {burst}: need rate > 0 "
                "and burst >= 1"
            )
        return cls(rate_per_s=rate_per_s, burst=burst, tokens=burst, updated_s=now_s)

    def refill(self, *, now_s: float) -> None:
        """Add the tokens earned since `updated_s` (never beyond `burst`)."""
        elapsed_s = max(0.0, now_s - self.updated_s)
        self.tokens = min(self.burst, self.tokens + elapsed_s * self.rate_per_s)
        self.updated_s = max(self.updated_s, now_s)

    def take(self, *, now_s: float) -> bool:
        """Take one token at `now_s` if there is one; False (and nothing taken) if not."""
        self.refill(now_s=now_s)
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class ParticipantRateLimiter:
    """One `TokenBucket` per participant id; thread-safe.

    Args:
        rate_per_s: sustained requests per second allowed to each participant.
        burst: requests one participant may make at once.
        clock: monotonic seconds; injected so tests control time.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        TokenBucket.full(rate_per_s, burst, now_s=0.0)  # refuses bad settings up front
        self._rate_per_s = rate_per_s
        self._burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, participant: str) -> None:
        """Count one request from `participant`.

        Raises:
            RateLimited: its bucket is empty; retry after a pause.
        """
        with self._lock:
            now_s = self._clock()
            bucket = self._buckets.get(participant)
            if bucket is None:
                if len(self._buckets) >= MAX_TRACKED:
                    self._forget_full(now_s)
                bucket = TokenBucket.full(self._rate_per_s, self._burst, now_s=now_s)
                self._buckets[participant] = bucket
            if bucket.take(now_s=now_s):
                return
        raise RateLimited(
            f"{participant} exceeds {self._rate_per_s:g} requests per second (burst "
            f"{self._burst}); retry in {1.0 / self._rate_per_s:.2g} s"
        )

    def _forget_full(self, now_s: float) -> None:
        """Drop the buckets that refilled completely: they hold nothing a new one lacks.

        Bounds the table when callers invent ids (possible only without mTLS, where no
        certificate pins the id; such ids are refused right after this check anyway).
        """
        for name, bucket in list(self._buckets.items()):
            bucket.refill(now_s=now_s)
            if bucket.tokens >= bucket.burst:
                del self._buckets[name]
