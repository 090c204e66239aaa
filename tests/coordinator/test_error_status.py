"""Which gRPC status an error answers with, over a real gRPC server and channel.

A peer's mistake answers its class's status and says what was wrong; an
`InternalError` (an internal API misused: a bug of ours) answers INTERNAL and tells
the peer nothing of it, so that a coordinator bug never blames the peer.
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
import pytest

from accord.coordinator.interceptors import AccordErrorInterceptor
from accord.errors import InternalError, Malformed, UsageError

METHOD = "/accord.test.Errors/Raise"


def _raise(request: bytes, context: grpc.ServicerContext) -> bytes:
    kind = request.decode()
    if kind == "internal":
        raise InternalError("begin_round takes a fresh in-flight row")
    if kind == "usage":
        raise UsageError("after_seq -1: must be an integer >= 0")
    if kind == "malformed":
        raise Malformed("chunk 3 does not decode")
    return b"ok"


@pytest.fixture(scope="module")
def channel():
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2),
        interceptors=[AccordErrorInterceptor(logging.getLogger("test.errors"))],
    )
    handler = grpc.unary_unary_rpc_method_handler(_raise)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("accord.test.Errors", {"Raise": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as open_channel:
        yield open_channel
    server.stop(None)


def call(channel: grpc.Channel, kind: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        channel.unary_unary(METHOD)(kind.encode(), timeout=10)
    return raised.value


def test_an_internal_error_answers_internal_without_its_detail(channel, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="test.errors"):
        error = call(channel, "internal")
    assert error.code() is grpc.StatusCode.INTERNAL
    assert "fresh in-flight row" not in error.details()
    assert "InternalError" not in error.details()
    assert any("fresh in-flight row" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


@pytest.mark.parametrize(
    ("kind", "status", "named"),
    [
        ("usage", grpc.StatusCode.INVALID_ARGUMENT, "UsageError: after_seq -1"),
        ("malformed", grpc.StatusCode.INVALID_ARGUMENT, "Malformed: chunk 3"),
    ],
)
def test_a_peers_mistake_answers_its_status_and_says_what(channel, kind, status, named) -> None:
    error = call(channel, kind)
    assert error.code() is status and named in error.details()


def test_a_good_call_passes(channel) -> None:
    assert channel.unary_unary(METHOD)(b"fine", timeout=10) == b"ok"
