"""The coordinator process: a gRPC server around the orchestrator, until it is stopped.

`serve(config)` binds the port (writing it to `<state_dir>/port` when it was 0), registers
the Coordinator service, the standard health service and reflection, starts the deadline
ticker and the optional Prometheus endpoint, and runs until SIGTERM or SIGINT.

`AccordErrorInterceptor` is the one place where an `AccordError` becomes a gRPC status
(`grpc_status` on its class); anything else is a bug and answers INTERNAL.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from accord import logs, transport
from accord.coordinator.config import CoordinatorConfig
from accord.coordinator.metrics import start_metrics
from accord.coordinator.orchestrator import Orchestrator
from accord.coordinator.service import CoordinatorService
from accord.errors import AccordError, ConfigError
from accord.proto.v1 import federation_pb2 as pb
from accord.proto.v1 import federation_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Coordinator"].full_name
TICK_S = 0.2
"""How often stage deadlines are checked."""


def _answer(context: grpc.ServicerContext, error: Exception, log: logging.Logger) -> NoReturn:
    """Turn `error` into the call's status (re-raising what already is one)."""
    if isinstance(error, grpc.RpcError) or context.code() is not None:
        raise error  # a cancelled stream, or `context.abort` already chose the status
    if isinstance(error, AccordError):
        code = getattr(grpc.StatusCode, error.grpc_status, grpc.StatusCode.INTERNAL)
        context.abort(code, f"{type(error).__name__}: {error}")
    log.error("unexpected error in a gRPC handler", exc_info=error)
    context.abort(grpc.StatusCode.INTERNAL, "internal error; see the coordinator's log")
    raise AssertionError("context.abort raises")  # pragma: no cover


class AccordErrorInterceptor(grpc.ServerInterceptor):
    """Answers an `AccordError` with its class's gRPC status and `TypeName: message`."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        log = self._log

        def wrap_unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
            def call(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    return behaviour(request, context)
                except Exception as error:
                    _answer(context, error, log)

            return call

        def wrap_stream(behaviour: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
            def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from behaviour(request, context)
                except Exception as error:
                    _answer(context, error, log)

            return call

        if handler.unary_unary:
            return handler._replace(unary_unary=wrap_unary(handler.unary_unary))
        if handler.stream_unary:
            return handler._replace(stream_unary=wrap_unary(handler.stream_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=wrap_stream(handler.unary_stream))
        if handler.stream_stream:
            return handler._replace(stream_stream=wrap_stream(handler.stream_stream))
        return handler


@dataclass
class RunningServer:
    """A started coordinator: stop it with `stop()`."""

    server: grpc.Server
    port: int
    orchestrator: Orchestrator
    stop_ticker: threading.Event

    def stop(self, grace_s: float = transport.GRACEFUL_STOP_S) -> None:
        """Stop ticking and serving; running calls get `grace_s` to finish."""
        self.stop_ticker.set()
        self.server.stop(grace_s).wait()


def start(config: CoordinatorConfig, *, log: logging.Logger) -> RunningServer:
    """Bind, register the services and start serving in background threads.

    Raises:
        ConfigError: TLS is required (mTLS arrives with provisioning), or the port is taken.
        UsageError: the profile is not wired into the services yet.
    """
    if not config.insecure_plaintext:
        raise ConfigError(
            "[coordinator] insecure_plaintext = false: mTLS arrives with provisioning (issue #4); "
            "until then only insecure_plaintext = true (loopback tests and demos) can serve"
        )
    orchestrator = Orchestrator(config, log=log)
    workers = 4 * len(config.participants) + 8
    server = grpc.server(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="accord-rpc"),
        interceptors=[AccordErrorInterceptor(log)],
        options=transport.server_options(config.max_message_bytes),
        maximum_concurrent_rpcs=workers * 4,
    )
    pb_grpc.add_CoordinatorServicer_to_server(CoordinatorService(config, orchestrator), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{config.listen_host}:{config.listen_port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as error:
        raise ConfigError(f"[coordinator] listen_port: cannot bind {address} ({error})") from None
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(config.port_file, f"{port}\n")
    stop_ticker = threading.Event()
    threading.Thread(
        target=_tick, args=(orchestrator, stop_ticker), name="accord-ticker", daemon=True
    ).start()
    if config.metrics_port is not None:
        metrics_port = start_metrics(config.listen_host, config.metrics_port)
        _write_atomically(config.state_dir / "metrics_port", f"{metrics_port}\n")
    logs.event(
        log,
        "serving",
        address=f"{config.listen_host}:{port}",
        federation=config.federation_id,
        profile=config.profile.value,
        participants=list(config.participants),
        rounds=config.rounds,
    )
    return RunningServer(server, port, orchestrator, stop_ticker)


def serve(config: CoordinatorConfig, *, log: logging.Logger) -> None:
    """Run the coordinator until SIGTERM or SIGINT."""
    running = start(config, log=log)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    logs.event(log, "stopping")
    running.stop()


def _tick(orchestrator: Orchestrator, stop: threading.Event) -> None:
    while not stop.wait(TICK_S):
        orchestrator.tick()


def _write_atomically(path: os.PathLike[str] | str, text: str) -> None:
    temporary = f"{os.fspath(path)}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)
