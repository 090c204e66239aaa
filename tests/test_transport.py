"""Keepalive is a pair: the client's pings must be no more frequent than the server allows.

A client that pings an idle connection more often than the server's minimum ping
interval collects "ping strikes", and a server that counts them answers GOAWAY
"too_many_pings" and drops the connection. (The coordinator tolerates any number of
strikes, `max_ping_strikes = 0`, but the pair must hold for any server in between
that does count them.) These tests check the pair in `accord.core.transport` as numbers,
then on a real loopback server with short periods through the same functions: an idle
channel stays connected for several keepalive periods and a call still succeeds, while
a client that pings too often is cut off by a strict server (the negative control that
shows the check can fail).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from accord.core import transport
from accord.core.transport import Options


def _option(options: Options, name: str) -> int:
    values = [value for key, value in options if key == name]
    assert len(values) == 1, f"{name} set {len(values)} times"
    return values[0]


def test_the_clients_keepalive_is_no_more_frequent_than_the_server_allows() -> None:
    client = transport.client_options()
    server = transport.server_options()
    keepalive_ms = _option(client, "grpc.keepalive_time_ms")
    min_interval_ms = _option(server, "grpc.http2.min_ping_interval_without_data_ms")
    assert keepalive_ms >= min_interval_ms
    assert _option(client, "grpc.keepalive_timeout_ms") < keepalive_ms
    # Both sides ping and accept pings on idle connections (a long-polled NextTask is idle).
    assert _option(client, "grpc.keepalive_permit_without_calls") == 1
    assert _option(server, "grpc.keepalive_permit_without_calls") == 1
    assert _option(client, "grpc.http2.max_pings_without_data") == 0
    # The message limit is the same on both sides.
    for name in ("grpc.max_receive_message_length", "grpc.max_send_message_length"):
        assert _option(client, name) == _option(server, name)


@contextmanager
def _health_server(options: Options) -> Iterator[str]:
    server = grpc.server(ThreadPoolExecutor(max_workers=2), options=options)
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0).wait()


def _idle_then_call(
    address: str, options: Options, idle_s: float
) -> list[grpc.ChannelConnectivity]:
    """Connect, stay idle up to `idle_s` (less once the connection drops), then call once.

    Returns:
        The connectivity states reported while idle, READY first.
    """
    states: list[grpc.ChannelConnectivity] = []
    dropped = threading.Event()

    def record(state: grpc.ChannelConnectivity) -> None:
        states.append(state)
        if state is not grpc.ChannelConnectivity.READY:
            dropped.set()

    with grpc.insecure_channel(address, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        channel.subscribe(record, try_to_connect=False)
        dropped.wait(idle_s)
        channel.unsubscribe(record)
        seen = list(states)
        answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    return seen


# gRPC core sends at most one keepalive ping a second, whatever keepalive_time_ms says, so
# the short test pair pings every second; a strict server (one strike) shows a violation
# within about three seconds.


def test_an_idle_channel_with_a_matching_pair_stays_connected_and_answers() -> None:
    server = transport.server_options(min_ping_interval_ms=500, max_ping_strikes=1)
    client = transport.client_options(keepalive_time_ms=1000, keepalive_timeout_ms=500)
    with _health_server(server) as address:
        states = _idle_then_call(address, client, idle_s=4.0)
    assert states == [grpc.ChannelConnectivity.READY]


def test_a_client_pinging_more_often_than_allowed_gets_goaway() -> None:
    # The negative control: the same check fails when the pair is wrong.
    server = transport.server_options(min_ping_interval_ms=10_000, max_ping_strikes=1)
    client = transport.client_options(keepalive_time_ms=1000, keepalive_timeout_ms=500)
    with _health_server(server) as address:
        states = _idle_then_call(address, client, idle_s=10.0)
    assert states[0] is grpc.ChannelConnectivity.READY
    assert grpc.ChannelConnectivity.IDLE in states[1:] or (
        grpc.ChannelConnectivity.TRANSIENT_FAILURE in states[1:]
    ), states


def test_retry_waits_grow_with_jitter_up_to_the_cap() -> None:
    waits = list(itertools.islice(transport.retry_delays(first_s=0.25, cap_s=8.0), 12))
    ceilings = [min(8.0, 0.25 * 2**i) for i in range(12)]
    for wait, ceiling in zip(waits, ceilings, strict=True):
        assert ceiling / 2 <= wait <= ceiling
    assert max(waits) <= 8.0 and waits[-1] >= 4.0  # capped, and never back to quick retries
    # Jitter: two clients that lost the same coordinator do not retry in lockstep.
    other = list(itertools.islice(transport.retry_delays(first_s=0.25, cap_s=8.0), 12))
    assert waits != other


def test_the_server_reads_ahead_a_fixed_window_per_stream() -> None:
    # gRPC's bandwidth probe would let every uploading stream buffer many MiB at the
    # coordinator; a fixed window bounds it (docs/benchmarks.md, coordinator peak RSS).
    options = dict(transport.server_options())
    assert options["grpc.http2.bdp_probe"] == 0
    assert options["grpc.http2.lookahead_bytes"] == transport.STREAM_WINDOW_BYTES
    assert 2 * transport.MiB <= transport.STREAM_WINDOW_BYTES  # two ~1 MiB chunks in flight


def test_the_coordinator_caps_malloc_arenas_on_glibc() -> None:
    import platform

    from accord.coordinator.server import limit_malloc_arenas

    expected = platform.libc_ver()[0] == "glibc"
    assert limit_malloc_arenas() is expected
