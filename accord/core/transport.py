"""gRPC transport settings that the coordinator and participants must agree on.

Standard library only. Keepalive is a pair: a client that pings more often than
the server permits is disconnected with GOAWAY "too_many_pings", so both sides read
the numbers from here. Message limits bound what one request may cost the receiver;
update and aggregate payloads travel as streams of chunks well below them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

MiB = 1 << 20

DEFAULT_MAX_MESSAGE_BYTES = 8 * MiB
"""Largest single gRPC message either side accepts (one chunk plus its header)."""

KEEPALIVE_TIME_MS = 20_000
"""A client pings an idle connection this often."""

KEEPALIVE_TIMEOUT_MS = 10_000
"""A ping unanswered for this long closes the connection."""

MIN_PING_INTERVAL_MS = 10_000
"""The server tolerates pings this often; must be <= KEEPALIVE_TIME_MS."""

STREAM_WINDOW_BYTES = 2 * MiB
"""How far a server reads ahead on one stream (its HTTP/2 flow-control window).

gRPC's default probes the bandwidth-delay product and grows each stream's window to
many MiB: on loopback, with every participant uploading at once, the coordinator then
buffers that much per stream (measured: 867 MiB peak at 50 participants x 1M
parameters, 423 MiB with this fixed window, the round no slower). A fixed window of
two chunks bounds the buffered bytes to 2 MiB per connection and still allows about
40 MB/s per stream over a 50 ms round trip."""

GRACEFUL_STOP_S = 5.0
"""How long a stopping server lets running calls finish."""

RETRY_FIRST_S = 0.25
"""A client's first wait before it retries an unreachable peer."""

RETRY_CAP_S = 8.0
"""The longest wait between two retries (well under a stage deadline)."""

Options = list[tuple[str, int]]


def retry_delays(first_s: float = RETRY_FIRST_S, cap_s: float = RETRY_CAP_S) -> Iterator[float]:
    """Waits between retries: exponential backoff with "equal jitter", capped.

    The ceiling doubles from `first_s` up to `cap_s`; each wait is drawn uniformly from
    the upper half of the current ceiling, so retries spread out (participants that
    lost a restarting coordinator together do not return in lockstep) yet never retry
    at once. The iterator is endless: the caller's deadline ends the retries.
    """
    ceiling = first_s
    while True:
        yield random.uniform(ceiling / 2, ceiling)
        ceiling = min(cap_s, ceiling * 2)


def server_options(
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    *,
    min_ping_interval_ms: int = MIN_PING_INTERVAL_MS,
    max_ping_strikes: int = 0,
) -> Options:
    """Channel arguments for `grpc.server`: message limits, keepalive, stream window.

    Args:
        max_message_bytes: largest message accepted or sent.
        min_ping_interval_ms: pings closer together than this are "bad" (tests shorten it).
        max_ping_strikes: bad pings tolerated before GOAWAY "too_many_pings"; 0 tolerates
            any number, so a client is never cut off by its keepalive.
    """
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", min_ping_interval_ms),
        ("grpc.http2.max_ping_strikes", max_ping_strikes),
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", STREAM_WINDOW_BYTES),
    ]


def client_options(
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    *,
    keepalive_time_ms: int = KEEPALIVE_TIME_MS,
    keepalive_timeout_ms: int = KEEPALIVE_TIMEOUT_MS,
) -> Options:
    """Channel arguments for a participant's channel, matching `server_options`.

    Args:
        max_message_bytes: largest message accepted or sent.
        keepalive_time_ms: ping an idle connection this often; keep it at least the
            server's `min_ping_interval_ms` (tests shorten both).
        keepalive_timeout_ms: close the connection when a ping is unanswered this long.
    """
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
